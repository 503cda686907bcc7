//! Phone numbers: E.164 in, checked against the numbering plan, stored normalised.

use crate::error::AppError;

/// Returns the E.164 form (`+919876543210`) of a valid number, or a 422 naming `field`.
pub fn normalize(raw: &str, field: &str) -> Result<String, AppError> {
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let digits = compact.strip_prefix('+').ok_or_else(|| {
        AppError::invalid(
            field,
            "phone must be in international format, starting with + and the country code",
        )
    })?;
    if digits.is_empty() || digits.len() > 15 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(AppError::invalid(
            field,
            "phone must be + followed by up to 15 digits",
        ));
    }
    let parsed = phonenumber::parse(None, &compact)
        .map_err(|_| AppError::invalid(field, "that is not a phone number"))?;
    if !phonenumber::is_valid(&parsed) {
        return Err(AppError::invalid(
            field,
            "that number does not exist in its country's numbering plan",
        ));
    }
    Ok(parsed.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn accepts_and_normalises_real_numbers() {
        assert_eq!(
            normalize("+91 98765 43210", "phone").unwrap(),
            "+919876543210"
        );
        assert_eq!(
            normalize("+1 (415) 555-2671", "phone").unwrap(),
            "+14155552671"
        );
    }

    #[test]
    fn refuses_what_is_not_e164_or_not_in_the_plan() {
        for bad in [
            "9876543210",
            "+",
            "+91abc",
            "+9112",
            "+0001234567",
            "+1234567890123456",
            "",
        ] {
            let e = normalize(bad, "phone").unwrap_err();
            assert_eq!(e.status.as_u16(), 422, "{bad}");
            assert_eq!(e.details["field"], "phone");
        }
    }
}
