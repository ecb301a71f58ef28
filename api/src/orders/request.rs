//! Turning a `POST /pedidos` body into an [`OrderRequest`], with errors that name the field and
//! the rule. This checks only the JSON shape (an object, each field of its JSON type); every
//! rule on the values is `shared::validation`'s. Pure: no HTTP, no Kafka.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use shared::validation::{self, FieldError, ORDER_FIELDS};

/// A valid order as a client asks for it, before the API assigns `id` and `dataSolicitacao`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub usuario: String,
    pub produto: String,
    pub quantidade: u32,
    pub valor: Decimal,
}

/// Validates a JSON body: an object with exactly the fields of an order, each within its rules.
pub fn parse_order_request(body: &Value) -> Result<OrderRequest, FieldError> {
    let Value::Object(object) = body else {
        return Err(FieldError::new("body", "must be a JSON object"));
    };
    if let Some(unknown) = object.keys().find(|k| !ORDER_FIELDS.contains(&k.as_str())) {
        return Err(FieldError {
            field: "body",
            rule: format!("unknown field `{unknown}`; expected only {ORDER_FIELDS:?}"),
        });
    }
    let usuario = text(object, "usuario")?;
    let produto = text(object, "produto")?;
    let quantidade = quantidade(object)?;
    let valor = valor(object)?;
    Ok(OrderRequest {
        usuario,
        produto,
        quantidade,
        valor,
    })
}

fn required<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a Value, FieldError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(FieldError::new(field, "is required")),
        Some(v) => Ok(v),
    }
}

fn text(object: &Map<String, Value>, field: &'static str) -> Result<String, FieldError> {
    let Value::String(s) = required(object, field)? else {
        return Err(FieldError::new(field, "must be a string"));
    };
    validation::check_text(field, s)?;
    Ok(s.trim().to_string())
}

fn quantidade(object: &Map<String, Value>) -> Result<u32, FieldError> {
    let Value::Number(n) = required(object, "quantidade")? else {
        return Err(FieldError::new("quantidade", "must be an integer"));
    };
    // Any integer is clamped into `u32` (a negative one to 0, a huge one to `u32::MAX`), where
    // the rule's own bounds judge it.
    let q = match (n.as_u64(), n.as_i64()) {
        (Some(q), _) => u32::try_from(q).unwrap_or(u32::MAX),
        (None, Some(_)) => 0,
        (None, None) => return Err(FieldError::new("quantidade", "must be an integer")),
    };
    validation::check_quantidade(q)?;
    Ok(q)
}

fn valor(object: &Map<String, Value>) -> Result<Decimal, FieldError> {
    let valor = match required(object, "valor")? {
        // A JSON number arrives as the shortest text that round-trips its f64; every valid
        // price (at most 2 decimals, at most 1e9) has fewer than 15 significant digits, so
        // that text is exactly what the client wrote.
        Value::Number(n) => {
            let text = n.to_string();
            let valor = Decimal::from_str(&text).map_err(|_| {
                FieldError::new("valor", format!("must be a decimal number, got {text:?}"))
            })?;
            validation::check_valor(valor)?;
            valor
        }
        // A string is taken as written (what the schema's `VALOR_PATTERN` documents).
        Value::String(s) => validation::check_valor_text(s)?,
        _ => {
            return Err(FieldError::new(
                "valor",
                "must be a number or a decimal string",
            ))
        }
    };
    // Money is shown with its cents: 19.9 becomes 19.90 (lossless: at most 2 decimals here).
    let mut valor = valor.normalize();
    valor.rescale(validation::MAX_VALOR_DECIMALS);
    Ok(valor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok() -> Value {
        json!({"usuario": "ana", "produto": "livro", "quantidade": 2, "valor": 19.9})
    }

    fn rejected(body: Value) -> FieldError {
        parse_order_request(&body).expect_err("body should be rejected")
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = ok();
        body[field] = value;
        body
    }

    fn without(field: &str) -> Value {
        let mut body = ok();
        body.as_object_mut().unwrap().remove(field);
        body
    }

    #[test]
    fn a_valid_body_is_accepted_exactly() {
        let order = parse_order_request(&ok()).unwrap();
        assert_eq!(order.usuario, "ana");
        assert_eq!(order.quantidade, 2);
        assert_eq!(order.valor, Decimal::new(199, 1));
        let as_string = parse_order_request(&with("valor", json!("0.10"))).unwrap();
        assert_eq!(as_string.valor.to_string(), "0.10");
    }

    #[test]
    fn prices_from_json_numbers_are_exact() {
        for text in ["0.1", "0.29", "1234567.89", "999999999.99", "19.90", "3"] {
            let body: Value = serde_json::from_str(&format!(
                r#"{{"usuario":"a","produto":"p","quantidade":1,"valor":{text}}}"#
            ))
            .unwrap();
            let parsed = parse_order_request(&body).unwrap().valor;
            assert_eq!(parsed, Decimal::from_str(text).unwrap(), "{text}");
        }
    }

    #[test]
    fn each_missing_field_is_named() {
        for field in ORDER_FIELDS {
            let e = rejected(without(field));
            assert_eq!((e.field, e.rule.as_str()), (field, "is required"));
            let e = rejected(with(field, Value::Null));
            assert_eq!(e.field, field);
        }
    }

    #[test]
    fn empty_and_oversized_text_is_rejected() {
        for field in ["usuario", "produto"] {
            assert_eq!(rejected(with(field, json!(""))).field, field);
            assert_eq!(rejected(with(field, json!("  "))).field, field);
            assert_eq!(rejected(with(field, json!("x".repeat(101)))).field, field);
            assert_eq!(rejected(with(field, json!(5))).rule, "must be a string");
        }
    }

    #[test]
    fn quantidade_rules() {
        assert_eq!(
            rejected(with("quantidade", json!(0))).rule,
            "must be at least 1"
        );
        assert_eq!(
            rejected(with("quantidade", json!(-3))).rule,
            "must be at least 1"
        );
        assert_eq!(
            rejected(with("quantidade", json!(1.5))).rule,
            "must be an integer"
        );
        assert_eq!(
            rejected(with("quantidade", json!("2"))).rule,
            "must be an integer"
        );
        assert_eq!(
            rejected(with("quantidade", json!(u64::MAX))).field,
            "quantidade"
        );
    }

    #[test]
    fn valor_rules() {
        assert_eq!(
            rejected(with("valor", json!(0))).rule,
            "must be greater than 0"
        );
        assert_eq!(
            rejected(with("valor", json!(-1.5))).rule,
            "must be greater than 0"
        );
        assert_eq!(rejected(with("valor", json!(0.001))).field, "valor");
        assert_eq!(rejected(with("valor", json!("abc"))).field, "valor");
        assert_eq!(rejected(with("valor", json!(true))).field, "valor");
        assert_eq!(rejected(with("valor", json!(1e12))).field, "valor");
    }

    /// `schema::tests` holds the document's pattern to the same rule, over many more strings.
    #[test]
    fn valor_strings_are_plain_decimals_within_range() {
        for ok in [
            "0.01",
            "0.1",
            "0.10",
            "0.99",
            "1",
            "19.9",
            "19.90",
            "999999999.99",
            "1000000000",
            "1000000000.0",
            "1000000000.00",
        ] {
            let parsed = parse_order_request(&with("valor", json!(ok)));
            assert!(parsed.is_ok(), "{ok}: {parsed:?}");
        }
        for bad in [
            "",
            "0",
            "0.0",
            "0.00",
            "00.5",
            "019.90",
            "1.",
            ".5",
            "1.005",
            "1.500",
            "+1",
            "-1",
            "1e3",
            " 1",
            "1 ",
            "1_000",
            "1,50",
            "1000000000.01",
            "1000000001",
            "NaN",
            "٣",
        ] {
            assert_eq!(rejected(with("valor", json!(bad))).field, "valor", "{bad}");
        }
    }

    #[test]
    fn non_objects_and_unknown_fields_are_rejected() {
        assert_eq!(rejected(json!([1, 2])).field, "body");
        assert_eq!(rejected(json!("pedido")).field, "body");
        let e = rejected(with("quantiade", json!(1)));
        assert!(e.rule.contains("quantiade"), "{e}");
    }

    #[test]
    fn what_a_client_reads_back_is_trimmed_text_and_a_price_with_its_cents() {
        let order = parse_order_request(&json!({
            "usuario": "  ana maria ", "produto": "ç".repeat(100), "quantidade": 1_000_000, "valor": 3
        }))
        .unwrap();
        assert_eq!(order.usuario, "ana maria");
        assert_eq!(order.produto.chars().count(), 100);
        assert_eq!(order.quantidade, 1_000_000);
        assert_eq!(order.valor.to_string(), "3.00");
        for (sent, kept) in [
            (json!(19.9), "19.90"),
            (json!("19.9"), "19.90"),
            (json!("0.5"), "0.50"),
        ] {
            let order = parse_order_request(&with("valor", sent.clone())).unwrap();
            assert_eq!(order.valor.to_string(), kept, "{sent}");
        }
    }

    #[test]
    fn integers_out_of_u32_are_judged_by_the_quantidade_bounds() {
        let e = rejected(with("quantidade", json!(u64::from(u32::MAX) + 1)));
        assert_eq!(
            (e.field, e.rule.as_str()),
            ("quantidade", "must be at most 1000000")
        );
        let e = rejected(with("quantidade", json!(i64::MIN)));
        assert_eq!(
            (e.field, e.rule.as_str()),
            ("quantidade", "must be at least 1")
        );
        let e = rejected(with("quantidade", json!(1_000_001)));
        assert_eq!(e.rule, "must be at most 1000000");
    }

    #[test]
    fn an_empty_body_and_an_unknown_field_say_what_is_expected() {
        // An empty body reaches the parser as JSON `null`.
        let e = rejected(Value::Null);
        assert_eq!(
            (e.field, e.rule.as_str()),
            ("body", "must be a JSON object")
        );
        let e = rejected(with("desconto", json!(5)));
        assert_eq!(
            e.rule,
            r#"unknown field `desconto`; expected only ["usuario", "produto", "quantidade", "valor"]"#
        );
    }

    #[test]
    fn the_first_broken_field_in_field_order_is_the_one_named() {
        let e = rejected(json!({"usuario": "", "produto": "", "quantidade": 0, "valor": 0}));
        assert_eq!(e.field, "usuario");
        let e = rejected(json!({"usuario": "a", "produto": "p", "quantidade": 0, "valor": 0}));
        assert_eq!(e.field, "quantidade");
    }

    #[test]
    fn valor_of_another_json_type_names_both_accepted_types() {
        for bad in [json!(true), json!([1]), json!({"v": 1})] {
            let e = rejected(with("valor", bad));
            assert_eq!(e.rule, "must be a number or a decimal string");
        }
        let e = rejected(with("valor", json!("1.005")));
        assert_eq!(
            e.rule,
            r#"must be a decimal number with at most 2 decimal places, like "19.90"; got "1.005""#
        );
    }
}
