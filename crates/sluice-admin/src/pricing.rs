//! Prices as operators write them (USD per million tokens, `0.15`) and as the
//! core stores them (integer micro-USD per million tokens, `150000`).
//!
//! The conversion is exact: a JSON number is read into the nearest `f64`,
//! whose shortest round-trip decimal form is the number the operator wrote
//! (for anything with at most 15 significant digits), and that decimal string
//! is converted digit by digit. More than 6 decimals would need a fraction
//! of a micro-dollar and is refused rather than rounded.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use sluice_core::Pricing;
use utoipa::ToSchema;

/// A route's prices, in US dollars per million tokens (at most 6 decimals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PricingBody {
    /// USD per million prompt (input) tokens.
    #[schema(example = 0.15)]
    pub prompt_usd_per_mtok: f64,
    /// USD per million completion (output) tokens.
    #[schema(example = 0.6)]
    pub completion_usd_per_mtok: f64,
}

impl PricingBody {
    /// Converts to the stored form; `at` is the field path of this object.
    pub fn to_core(self, at: &str) -> Result<Pricing, ApiError> {
        Ok(Pricing {
            prompt_micro_usd_per_mtok: usd_to_micro(self.prompt_usd_per_mtok)
                .map_err(|m| ApiError::validation(format!("{at}.prompt_usd_per_mtok"), m))?,
            completion_micro_usd_per_mtok: usd_to_micro(self.completion_usd_per_mtok)
                .map_err(|m| ApiError::validation(format!("{at}.completion_usd_per_mtok"), m))?,
        })
    }

    pub fn from_core(pricing: &Pricing) -> Self {
        PricingBody {
            prompt_usd_per_mtok: micro_to_usd(pricing.prompt_micro_usd_per_mtok),
            completion_usd_per_mtok: micro_to_usd(pricing.completion_micro_usd_per_mtok),
        }
    }
}

/// Exact conversion of a USD amount to micro-USD.
pub fn usd_to_micro(usd: f64) -> Result<u64, &'static str> {
    if !usd.is_finite() {
        return Err("must be a finite number");
    }
    if usd < 0.0 {
        return Err("must not be negative");
    }
    // `Display` for f64 prints the shortest decimal that reads back as the
    // same value, never in exponent form.
    let text = format!("{}", usd.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if fraction.len() > 6 {
        return Err("at most 6 decimal places (one micro-dollar)");
    }
    const TOO_LARGE: &str = "is too large";
    let whole: u64 = whole.parse().map_err(|_| TOO_LARGE)?;
    let fraction: u64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").parse().map_err(|_| TOO_LARGE)?
    };
    whole
        .checked_mul(1_000_000)
        .and_then(|micro| micro.checked_add(fraction))
        .ok_or(TOO_LARGE)
}

/// The USD amount of `micro` micro-USD, as the nearest `f64` (which prints
/// as the exact decimal for any price below 2^53 micro-USD).
pub fn micro_to_usd(micro: u64) -> f64 {
    // Precision loss only past 2^53 micro-USD ($9 billion per million tokens).
    micro as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_conversions() {
        assert_eq!(usd_to_micro(0.15), Ok(150_000));
        assert_eq!(usd_to_micro(0.6), Ok(600_000));
        assert_eq!(usd_to_micro(0.0), Ok(0));
        assert_eq!(usd_to_micro(-0.0), Ok(0));
        assert_eq!(usd_to_micro(15.0), Ok(15_000_000));
        assert_eq!(usd_to_micro(0.000001), Ok(1));
        assert_eq!(usd_to_micro(1.1), Ok(1_100_000));
        assert_eq!(usd_to_micro(123456.789012), Ok(123_456_789_012));
    }

    #[test]
    fn refusals() {
        assert!(usd_to_micro(-0.01).is_err());
        assert!(usd_to_micro(f64::NAN).is_err());
        assert!(usd_to_micro(f64::INFINITY).is_err());
        assert!(usd_to_micro(0.0000001).is_err());
        assert!(usd_to_micro(0.1234567).is_err());
        assert!(usd_to_micro(1e20).is_err());
    }

    #[test]
    fn round_trips_through_the_stored_form() {
        for usd in [0.15, 0.6, 2.5, 0.000001, 10.0, 3.999999] {
            let micro = usd_to_micro(usd).unwrap();
            assert_eq!(micro_to_usd(micro), usd);
            assert_eq!(
                serde_json::to_string(&micro_to_usd(micro)).unwrap(),
                serde_json::to_string(&usd).unwrap()
            );
        }
    }

    #[test]
    fn field_paths_name_the_price() {
        let err = PricingBody {
            prompt_usd_per_mtok: 0.1,
            completion_usd_per_mtok: -1.0,
        }
        .to_core("pricing")
        .unwrap_err();
        assert_eq!(
            err.field.as_deref(),
            Some("pricing.completion_usd_per_mtok")
        );
    }
}
