//! What the handlers take from a request, parsed by our own code so that a rejection names the
//! field and the rule (poem-openapi's own errors cannot): the `POST /pedidos` body and the
//! `{id}` of `/pedidos/{id}`.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ParseFromParameter, ParseResult, Type};
use serde_json::Value;
use shared::validation::FieldError;
use uuid::Uuid;

use super::schema;
use crate::orders::{parse_order_request, OrderRequest};

/// The `POST /pedidos` body (`PedidoNovo` to clients): the verdict of [`parse_order_request`],
/// which the handler answers with a 422 when it is an error.
pub(crate) struct OrderRequestBody(pub(crate) Result<OrderRequest, FieldError>);

impl Type for OrderRequestBody {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        schema::ORDER_REQUEST.into()
    }
    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }
    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |_| schema::order_request());
    }
    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }
    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for OrderRequestBody {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Ok(Self(parse_order_request(&value.unwrap_or_default())))
    }
}

/// The `{id}` of `/pedidos/{id}`: documented as a UUID, checked by the handler so that a bad
/// one gets a 400 naming `id` (poem-openapi's own error would name it `param0`).
pub(crate) struct OrderId(pub(crate) Option<Uuid>);

impl Type for OrderId {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        Uuid::name()
    }
    fn schema_ref() -> MetaSchemaRef {
        Uuid::schema_ref()
    }
    fn register(registry: &mut Registry) {
        Uuid::register(registry)
    }
    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }
    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromParameter for OrderId {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self(Uuid::parse_str(value).ok()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_absent_body_is_judged_like_any_other_and_never_fails_parsing() {
        let Ok(OrderRequestBody(verdict)) = OrderRequestBody::parse_from_json(None) else {
            panic!("parsing the body itself never fails");
        };
        assert_eq!(
            verdict.unwrap_err(),
            FieldError::new("body", "must be a JSON object")
        );
        let body = json!({"usuario": "ana", "produto": "livro", "quantidade": 1, "valor": "1"});
        let Ok(OrderRequestBody(verdict)) = OrderRequestBody::parse_from_json(Some(body)) else {
            panic!("parsing the body itself never fails");
        };
        assert_eq!(verdict.unwrap().valor.to_string(), "1.00");
    }

    #[test]
    fn an_id_that_is_not_a_uuid_reaches_the_handler_as_none() {
        let Ok(OrderId(id)) = OrderId::parse_from_parameter("123") else {
            panic!("parsing the id itself never fails");
        };
        assert_eq!(id, None);
        let uuid = "0e3bb516-f251-49ef-bbbb-89d033610932";
        let Ok(OrderId(id)) = OrderId::parse_from_parameter(uuid) else {
            panic!("parsing the id itself never fails");
        };
        assert_eq!(id, Some(uuid.parse().unwrap()));
    }
}
