//! The rules an order must satisfy, shared by the API (which rejects with 4xx) and fraud (which
//! sends an order breaking them to the dead-letter topic).

use rust_decimal::Decimal;

use crate::events::Order;

pub const MAX_TEXT_CHARS: usize = 100;
pub const MAX_QUANTIDADE: u32 = 1_000_000;
/// Largest accepted unit price: keeps every valid price exactly representable everywhere.
pub const MAX_VALOR: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
pub const MAX_VALOR_DECIMALS: u32 = 2;

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
    if value < 1 {
        return Err(FieldError::new("quantidade", "must be at least 1"));
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
    }
}
