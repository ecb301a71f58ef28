//! Turning a request body into a valid new order, with errors that name the field and the rule.
//! Pure: no HTTP, no Kafka.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use shared::validation::{self, FieldError};

/// A validated order request, before the API assigns `id` and `dataSolicitacao`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub usuario: String,
    pub produto: String,
    pub quantidade: u32,
    pub valor: Decimal,
}

const FIELDS: [&str; 4] = ["usuario", "produto", "quantidade", "valor"];

/// Validates a JSON body: an object with exactly the four fields, each within its rules.
pub fn parse_new_order(body: &Value) -> Result<NewOrder, FieldError> {
    let Value::Object(object) = body else {
        return Err(FieldError::new("body", "must be a JSON object"));
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(FieldError {
            field: "body",
            rule: format!("unknown field `{unknown}`; expected only {FIELDS:?}"),
        });
    }
    let usuario = text(object, "usuario")?;
    let produto = text(object, "produto")?;
    let quantidade = quantidade(object)?;
    let valor = valor(object)?;
    Ok(NewOrder {
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
    let value = required(object, "quantidade")?;
    let Value::Number(n) = value else {
        return Err(FieldError::new("quantidade", "must be an integer"));
    };
    let q = if let Some(q) = n.as_u64() {
        q
    } else if n.as_i64().is_some() {
        return Err(FieldError::new("quantidade", "must be at least 1"));
    } else {
        return Err(FieldError::new("quantidade", "must be an integer"));
    };
    let q = u32::try_from(q).unwrap_or(u32::MAX);
    validation::check_quantidade(q)?;
    Ok(q)
}

fn valor(object: &Map<String, Value>) -> Result<Decimal, FieldError> {
    // A JSON number arrives as the shortest text that round-trips its f64; every valid price
    // (at most 2 decimals, at most 1e9) has fewer than 15 significant digits, so that text is
    // exactly what the client wrote. A string is taken as written, and must be a plain decimal
    // (what the OpenAPI document's pattern for it says: `http::VALOR_PATTERN`).
    let text = match required(object, "valor")? {
        Value::Number(n) => n.to_string(),
        Value::String(s) if is_plain_decimal(s) => s.clone(),
        Value::String(s) => {
            return Err(FieldError::new(
                "valor",
                format!(
                "must be a decimal number with at most 2 decimal places, like \"19.90\"; got {s:?}"
            ),
            ))
        }
        _ => {
            return Err(FieldError::new(
                "valor",
                "must be a number or a decimal string",
            ))
        }
    };
    let valor = Decimal::from_str(&text)
        .map_err(|_| FieldError::new("valor", format!("must be a decimal number, got {text:?}")))?;
    validation::check_valor(valor)?;
    // Money is shown with its cents: 19.9 becomes 19.90 (lossless: at most 2 decimals here).
    let mut valor = valor.normalize();
    valor.rescale(validation::MAX_VALOR_DECIMALS);
    Ok(valor)
}

/// Digits, then optionally a point and 1 or 2 digits; no sign, exponent, white space or
/// leading zero (`0.5` is fine, `00.5` is not).
fn is_plain_decimal(s: &str) -> bool {
    let (whole, cents) = match s.split_once('.') {
        Some((whole, cents)) => (whole, Some(cents)),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let cents_ok = match cents {
        None => true,
        Some(c) => digits(c) && c.len() <= validation::MAX_VALOR_DECIMALS as usize,
    };
    digits(whole) && (whole == "0" || !whole.starts_with('0')) && cents_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok() -> Value {
        json!({"usuario": "ana", "produto": "livro", "quantidade": 2, "valor": 19.9})
    }

    fn rejected(body: Value) -> FieldError {
        parse_new_order(&body).expect_err("body should be rejected")
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
        let order = parse_new_order(&ok()).unwrap();
        assert_eq!(order.usuario, "ana");
        assert_eq!(order.quantidade, 2);
        assert_eq!(order.valor, Decimal::new(199, 1));
        let as_string = parse_new_order(&with("valor", json!("0.10"))).unwrap();
        assert_eq!(as_string.valor.to_string(), "0.10");
    }

    #[test]
    fn prices_from_json_numbers_are_exact() {
        for text in ["0.1", "0.29", "1234567.89", "999999999.99", "19.90", "3"] {
            let body: Value = serde_json::from_str(&format!(
                r#"{{"usuario":"a","produto":"p","quantidade":1,"valor":{text}}}"#
            ))
            .unwrap();
            let parsed = parse_new_order(&body).unwrap().valor;
            assert_eq!(parsed, Decimal::from_str(text).unwrap(), "{text}");
        }
    }

    #[test]
    fn each_missing_field_is_named() {
        for field in FIELDS {
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

    /// Strings are held to exactly what `http::VALOR_PATTERN` documents.
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
            let parsed = parse_new_order(&with("valor", json!(ok)));
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
        assert_eq!(
            validation::MAX_VALOR,
            Decimal::from(1_000_000_000),
            "http::VALOR_PATTERN spells this maximum out"
        );
    }

    #[test]
    fn non_objects_and_unknown_fields_are_rejected() {
        assert_eq!(rejected(json!([1, 2])).field, "body");
        assert_eq!(rejected(json!("pedido")).field, "body");
        let e = rejected(with("quantiade", json!(1)));
        assert!(e.rule.contains("quantiade"), "{e}");
    }
}
