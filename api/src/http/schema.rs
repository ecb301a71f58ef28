//! The documented shape of the `POST /pedidos` body (`PedidoNovo`), built from the rules in
//! `shared::validation`. Written by hand because `valor` is one of two types; its bounds,
//! lengths and required fields come from the rules' constants, and what only a regex can say
//! (the text and price patterns) is held to the rules by the tests below.

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::Value;
use shared::validation::{
    MAX_QUANTIDADE, MAX_TEXT_CHARS, MAX_VALOR, MAX_VALOR_DECIMALS, MIN_QUANTIDADE, MIN_VALOR,
    ORDER_FIELDS,
};

/// The name clients see for the body.
pub(crate) const ORDER_REQUEST: &str = "PedidoNovo";

/// `usuario` and `produto` (`validation::check_text`): no control character, and at least one
/// character that is neither white space nor control (the API trims the text, and refuses it
/// empty). The white space is Rust's `char::is_whitespace`, spelled out so every regex dialect
/// reads it alike.
const TEXT_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$";

/// `valor` as a string (`validation::check_valor_text`): a plain decimal, no sign, exponent,
/// leading zero or white space, at most 2 decimals, from 0.01 to 1000000000.
const VALOR_PATTERN: &str =
    r"^([1-9][0-9]{0,8}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?)|1000000000(\.00?)?)$";

fn inline(schema: MetaSchema) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(schema))
}

fn f64_of(d: Decimal) -> f64 {
    d.to_f64().expect("an order bound fits an f64")
}

/// The `PedidoNovo` schema; `additionalProperties: false` is added by [`forbid_other_fields`].
pub(crate) fn order_request() -> MetaSchema {
    let text = |description| MetaSchema {
        description: Some(description),
        min_length: Some(1),
        max_length: Some(MAX_TEXT_CHARS),
        pattern: Some(TEXT_PATTERN.into()),
        ..MetaSchema::new("string")
    };
    let one_cent = Decimal::new(1, MAX_VALOR_DECIMALS);
    MetaSchema {
        description: Some("An order to place. No other field is accepted."),
        required: ORDER_FIELDS.to_vec(),
        properties: vec![
            ("usuario", inline(text("Customer name (1–100 characters)."))),
            ("produto", inline(text("Product name (1–100 characters)."))),
            (
                "quantidade",
                inline(MetaSchema {
                    description: Some("How many units."),
                    minimum: Some(MIN_QUANTIDADE.into()),
                    maximum: Some(MAX_QUANTIDADE.into()),
                    ..MetaSchema::new_with_format("integer", "int32")
                }),
            ),
            (
                "valor",
                inline(MetaSchema {
                    description: Some(
                        "Unit price, from 0.01 to 1000000000 with at most 2 decimal places: a JSON \
                         number (`19.9`) or a decimal string (`\"19.90\"`). Kept exact, never \
                         rounded through a binary float.",
                    ),
                    one_of: vec![
                        inline(MetaSchema {
                            minimum: Some(f64_of(MIN_VALOR)),
                            maximum: Some(f64_of(MAX_VALOR)),
                            multiple_of: Some(f64_of(one_cent)),
                            ..MetaSchema::new("number")
                        }),
                        inline(MetaSchema {
                            pattern: Some(VALOR_PATTERN.into()),
                            ..MetaSchema::new("string")
                        }),
                    ],
                    ..MetaSchema::ANY
                }),
            ),
        ],
        example: Some(serde_json::json!({
            "usuario": "ana", "produto": "livro", "quantidade": 2, "valor": 19.9
        })),
        ..MetaSchema::new("object")
    }
}

/// What poem-openapi cannot express: `PedidoNovo` forbids other properties (the parser refuses
/// unknown fields, and the document must say so, or clients and Schemathesis take extras for
/// valid).
pub(crate) fn forbid_other_fields(spec: &mut Value) {
    let body = &mut spec["components"]["schemas"][ORDER_REQUEST];
    assert!(
        body.is_object(),
        "the {ORDER_REQUEST} schema is in the document"
    );
    body["additionalProperties"] = Value::Bool(false);
}

/// What the `Idempotency-Key` header may hold, as `idempotency::check_key` judges it: 1 to
/// `MAX_KEY_CHARS` characters, none a control character (Unicode's Cc: C0, DEL and C1).
pub(crate) const IDEMPOTENCY_KEY_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$";

/// Completes the `Idempotency-Key` parameter of `POST /pedidos` with its rules (poem-openapi
/// documents a header as a bare string; the handler checks it, to name it in its 400).
pub(crate) fn constrain_idempotency_key(spec: &mut Value) {
    let parameters = spec["paths"]["/pedidos"]["post"]["parameters"]
        .as_array_mut()
        .expect("POST /pedidos has parameters");
    let key = parameters
        .iter_mut()
        .find(|p| p["name"] == crate::orders::idempotency::HEADER)
        .expect("POST /pedidos documents Idempotency-Key");
    key["schema"] = serde_json::json!({
        "type": "string",
        "minLength": 1,
        "maxLength": crate::orders::idempotency::MAX_KEY_CHARS,
        "pattern": IDEMPOTENCY_KEY_PATTERN,
    });
}

/// The schema as clients read it in `/openapi.json`, held to the rules a request is judged by:
/// every test goes through `parse_order_request`, what a `POST /pedidos` answers.
#[cfg(test)]
mod tests {
    use regex::Regex;
    use serde_json::{json, Value};
    use shared::validation::{self, FieldError};

    use super::*;
    use crate::http::docs::test_document;
    use crate::orders::parse_order_request;

    fn schema() -> Value {
        test_document().0["components"]["schemas"][ORDER_REQUEST].clone()
    }

    #[test]
    fn the_idempotency_key_schema_is_check_key() {
        let spec = test_document().0;
        let parameter = spec["paths"]["/pedidos"]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap()
            .clone();
        assert_eq!(parameter["in"], "header");
        assert_eq!(parameter["required"], false);
        let schema = &parameter["schema"];
        assert_eq!(
            schema["maxLength"],
            crate::orders::idempotency::MAX_KEY_CHARS
        );
        // The document's regex dialect (ECMA-262) spells code points \uXXXX; Rust's \x{XXXX}.
        let ecma = schema["pattern"].as_str().unwrap();
        let escapes = Regex::new(r"\\u([0-9A-Fa-f]{4})").unwrap();
        let pattern = Regex::new(&escapes.replace_all(ecma, r"\x{$1}")).unwrap();
        let long = "k".repeat(256);
        for key in [
            "k",
            "order-1",
            "é ü 中",
            "with space",
            "",
            "a\tb",
            "\u{7f}",
            "a\u{85}",
            &long,
        ] {
            let by_schema = pattern.is_match(key)
                && (1..=crate::orders::idempotency::MAX_KEY_CHARS).contains(&key.chars().count());
            assert_eq!(
                by_schema,
                crate::orders::idempotency::check_key(key).is_ok(),
                "{key:?}"
            );
        }
    }

    fn valid() -> Value {
        json!({"usuario": "ana", "produto": "livro", "quantidade": 2, "valor": "19.90"})
    }

    /// The verdict on `valid()` with `field` set to `value`.
    fn judge(field: &str, value: Value) -> Result<(), FieldError> {
        let mut body = valid();
        body[field] = value;
        parse_order_request(&body).map(drop)
    }

    fn pattern(schema: &Value) -> Regex {
        Regex::new(schema["pattern"].as_str().expect("a pattern")).expect("the pattern compiles")
    }

    #[test]
    fn the_fields_are_the_rules_fields_all_required_and_no_other() {
        let schema = schema();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(required, ORDER_FIELDS);
        let properties: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(properties.len(), ORDER_FIELDS.len(), "{properties:?}");
        for field in ORDER_FIELDS {
            assert!(schema["properties"][field].is_object(), "{field}");
            let mut body = valid();
            body.as_object_mut().unwrap().remove(field);
            assert_eq!(parse_order_request(&body).unwrap_err().field, field);
        }
        assert_eq!(schema["additionalProperties"], false);
        assert!(
            judge("desconto", json!(1)).is_err(),
            "an extra field is refused"
        );
        assert!(
            parse_order_request(&schema["example"]).is_ok(),
            "the example is valid"
        );
    }

    #[test]
    fn text_lengths_and_pattern_are_check_text() {
        let schema = schema();
        for field in ["usuario", "produto"] {
            let text = &schema["properties"][field];
            let (min, max) = (
                text["minLength"].as_u64().unwrap(),
                text["maxLength"].as_u64().unwrap(),
            );
            assert_eq!((min, max as usize), (1, MAX_TEXT_CHARS), "{text}");
            let description = text["description"].as_str().unwrap();
            assert!(
                description.contains(&format!("{min}–{max} characters")),
                "{description}"
            );
            for (length, accepted) in [(0, false), (min, true), (max, true), (max + 1, false)] {
                let value = "ç".repeat(length as usize);
                assert_eq!(
                    judge(field, json!(value)).is_ok(),
                    accepted,
                    "{field}, {length} chars"
                );
            }
            let pattern = pattern(text);
            // Every character of the Basic Multilingual Plane and a few beyond, alone and among
            // ordinary letters and spaces: the pattern accepts exactly what the rule accepts.
            let chars = (0..=0xffff_u32).chain([0x1_0000, 0x1_f600, 0x10_ffff]);
            for c in chars.filter_map(char::from_u32) {
                for text in [
                    c.to_string(),
                    format!("a{c}"),
                    format!("{c}b"),
                    format!(" {c} "),
                ] {
                    let rule = validation::check_text(field, &text);
                    assert_eq!(
                        pattern.is_match(&text),
                        rule.is_ok(),
                        "{field} {text:?}: {rule:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn quantidade_bounds_are_check_quantidade() {
        let quantidade = &schema()["properties"]["quantidade"];
        assert_eq!(quantidade["type"], "integer");
        assert_eq!(quantidade["format"], "int32");
        // JSON Schema bounds are numbers (`1.0`): whole ones, for an integer.
        let bound = |key: &str| {
            let n = quantidade[key].as_f64().unwrap();
            assert_eq!(n.fract(), 0.0, "{key} {n}");
            n as i64
        };
        let (min, max) = (bound("minimum"), bound("maximum"));
        assert!(i32::try_from(max).is_ok(), "int32 holds the maximum");
        for (n, accepted) in [(min - 1, false), (min, true), (max, true), (max + 1, false)] {
            assert_eq!(
                judge("quantidade", json!(n)).is_ok(),
                accepted,
                "quantidade {n}"
            );
        }
    }

    #[test]
    fn valor_as_a_number_has_the_bounds_and_the_cents_of_check_valor() {
        let valor = &schema()["properties"]["valor"];
        let number = &valor["oneOf"][0];
        assert_eq!(number["type"], "number");
        let (min, max) = (
            number["minimum"].as_f64().unwrap(),
            number["maximum"].as_f64().unwrap(),
        );
        let step = number["multipleOf"].as_f64().unwrap();
        assert_eq!(step, 10f64.powi(-(MAX_VALOR_DECIMALS as i32)));
        for (n, accepted) in [
            (min - step, false),
            (min, true),
            (min + step, true),
            (max, true),
            (max + step, false),
            (min + step / 10.0, false),
        ] {
            assert_eq!(judge("valor", json!(n)).is_ok(), accepted, "valor {n}");
        }
        let description = valor["description"].as_str().unwrap();
        for spelled in [
            format!("from {min} to {max}"),
            format!("at most {MAX_VALOR_DECIMALS} decimal places"),
        ] {
            assert!(description.contains(&spelled), "{spelled}: {description}");
        }
    }

    #[test]
    fn valor_as_a_string_matches_the_pattern_exactly_when_check_valor_text_accepts_it() {
        let string = &schema()["properties"]["valor"]["oneOf"][1];
        assert_eq!(string["type"], "string");
        let pattern = pattern(string);
        let wholes = [
            "",
            "0",
            "00",
            "01",
            "1",
            "9",
            "10",
            "19",
            "099",
            "100",
            "999999999",
            "0999999999",
            "1000000000",
            "1000000001",
            "9999999999",
            "10000000000",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1e3",
            "1_0",
            "٣",
        ];
        let fractions = [
            "", ".", ".0", ".00", ".000", ".01", ".05", ".1", ".10", ".5", ".50", ".99", ".999",
            ".005", ".1 ", ",5", ".-1", ".e1",
        ];
        let mut accepted = 0;
        for whole in wholes {
            for fraction in fractions {
                let text = format!("{whole}{fraction}");
                let rule = validation::check_valor_text(&text);
                assert_eq!(pattern.is_match(&text), rule.is_ok(), "{text:?}: {rule:?}");
                accepted += usize::from(rule.is_ok());
            }
        }
        assert!(
            accepted > 40,
            "the corpus holds valid prices too ({accepted})"
        );
        // Every cent up to 100.00, and around the maximum.
        let cents = (0..=10_000).chain(99_999_999_990..=100_000_000_010_i64);
        for cents in cents {
            for text in [
                Decimal::new(cents, 2).to_string(),
                Decimal::new(cents, 2).normalize().to_string(),
            ] {
                let rule = validation::check_valor_text(&text);
                assert_eq!(pattern.is_match(&text), rule.is_ok(), "{text:?}: {rule:?}");
            }
        }
    }
}
