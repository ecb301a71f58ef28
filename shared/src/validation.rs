//! The rules an order must satisfy, defined once: the API rejects a request breaking them with a
//! 422 (and its OpenAPI schema is tested against them), fraud sends an order breaking them to
//! the dead-letter topic.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::events::Order;

/// The fields of an order as a client writes it, in the order they are checked: all required,
/// no other accepted.
pub const ORDER_FIELDS: [&str; 4] = ["usuario", "produto", "quantidade", "valor"];
/// `usuario` and `produto`, counted in characters (not bytes) as written, before trimming.
pub const MAX_TEXT_CHARS: usize = 100;
pub const MIN_QUANTIDADE: u32 = 1;
pub const MAX_QUANTIDADE: u32 = 1_000_000;
pub const MAX_VALOR_DECIMALS: u32 = 2;
/// Smallest accepted unit price: a price is above 0 with at most [`MAX_VALOR_DECIMALS`].
pub const MIN_VALOR: Decimal = Decimal::from_parts(1, 0, 0, false, MAX_VALOR_DECIMALS);
/// Largest accepted unit price: keeps every valid price exactly representable everywhere.
pub const MAX_VALOR: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// Which field broke which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    pub field: &'static str,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        Self {
            field,
            rule: rule.into(),
        }
    }
}

pub fn check_text(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

pub fn check_quantidade(value: u32) -> Result<(), FieldError> {
    if value < MIN_QUANTIDADE {
        return Err(FieldError::new(
            "quantidade",
            format!("must be at least {MIN_QUANTIDADE}"),
        ));
    }
    if value > MAX_QUANTIDADE {
        return Err(FieldError::new(
            "quantidade",
            format!("must be at most {MAX_QUANTIDADE}"),
        ));
    }
    Ok(())
}

pub fn check_valor(value: Decimal) -> Result<(), FieldError> {
    if value <= Decimal::ZERO {
        return Err(FieldError::new("valor", "must be greater than 0"));
    }
    if value > MAX_VALOR {
        return Err(FieldError::new(
            "valor",
            format!("must be at most {MAX_VALOR}"),
        ));
    }
    if value.normalize().scale() > MAX_VALOR_DECIMALS {
        return Err(FieldError::new(
            "valor",
            format!("must have at most {MAX_VALOR_DECIMALS} decimal places"),
        ));
    }
    Ok(())
}

/// A price written as text (how the API takes a `valor` string): a plain decimal, no sign,
/// exponent, white space or leading zero (`0.5` is fine, `00.5` is not), then [`check_valor`].
pub fn check_valor_text(text: &str) -> Result<Decimal, FieldError> {
    let (whole, cents) = match text.split_once('.') {
        Some((whole, cents)) => (whole, Some(cents)),
        None => (text, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let cents_ok = match cents {
        None => true,
        Some(c) => digits(c) && c.len() <= MAX_VALOR_DECIMALS as usize,
    };
    if !(digits(whole) && (whole == "0" || !whole.starts_with('0')) && cents_ok) {
        return Err(FieldError::new(
            "valor",
            format!(
                "must be a decimal number with at most {MAX_VALOR_DECIMALS} decimal places, \
                 like \"19.90\"; got {text:?}"
            ),
        ));
    }
    let valor = Decimal::from_str(text)
        .map_err(|_| FieldError::new("valor", format!("must be a decimal number, got {text:?}")))?;
    check_valor(valor)?;
    Ok(valor)
}

/// Every rule, in the order of the fields.
pub fn check_order(order: &Order) -> Result<(), FieldError> {
    check_text("usuario", &order.usuario)?;
    check_text("produto", &order.produto)?;
    check_quantidade(order.quantidade)?;
    check_valor(order.valor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn text_rules() {
        assert!(check_text("usuario", "ana").is_ok());
        assert_eq!(
            check_text("usuario", "").unwrap_err().rule,
            "must not be empty"
        );
        assert_eq!(check_text("produto", "   ").unwrap_err().field, "produto");
        assert!(check_text("usuario", &"x".repeat(100)).is_ok());
        assert!(check_text("usuario", &"x".repeat(101)).is_err());
        assert!(
            check_text("usuario", &"ç".repeat(100)).is_ok(),
            "limit counts characters, not bytes"
        );
        assert!(check_text("usuario", "a\u{0}b").is_err());
    }

    #[test]
    fn quantidade_rules() {
        assert!(check_quantidade(0).is_err());
        assert!(check_quantidade(1).is_ok());
        assert!(check_quantidade(MAX_QUANTIDADE).is_ok());
        assert!(check_quantidade(MAX_QUANTIDADE + 1).is_err());
    }

    #[test]
    fn valor_rules() {
        assert!(check_valor(dec("0")).is_err());
        assert!(check_valor(dec("-1")).is_err());
        assert!(check_valor(dec("0.01")).is_ok());
        assert!(check_valor(dec("19.90")).is_ok());
        assert!(
            check_valor(dec("19.900")).is_ok(),
            "trailing zeros are not extra precision"
        );
        assert_eq!(check_valor(dec("0.001")).unwrap_err().field, "valor");
        assert!(check_valor(MAX_VALOR).is_ok());
        assert!(check_valor(MAX_VALOR + dec("0.01")).is_err());
        assert!(check_valor(MIN_VALOR).is_ok());
        assert!(check_valor(MIN_VALOR - dec("0.001")).is_err());
    }

    #[test]
    fn valor_text_is_a_plain_decimal_within_the_rules() {
        assert_eq!(check_valor_text("19.9").unwrap(), dec("19.9"));
        assert_eq!(check_valor_text("0.10").unwrap().to_string(), "0.10");
        assert_eq!(
            check_valor_text("1e3").unwrap_err().rule,
            r#"must be a decimal number with at most 2 decimal places, like "19.90"; got "1e3""#
        );
        assert_eq!(
            check_valor_text("0.00").unwrap_err().rule,
            "must be greater than 0"
        );
        assert_eq!(
            check_valor_text("1000000001").unwrap_err().rule,
            "must be at most 1000000000"
        );
    }
}
