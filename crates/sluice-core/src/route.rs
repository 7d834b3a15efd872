//! Routes: a public model name mapped to weighted deployments on providers.

use crate::{name::check_model_name, ApplyError};
use serde::{Deserialize, Serialize};

/// Largest weight of one deployment.
pub const MAX_WEIGHT: u32 = 10_000;

/// One place a route's traffic can go: a model on a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Name of a [`crate::Provider`].
    pub provider: String,
    /// The model name the provider knows it by.
    pub model: String,
    /// Relative share of traffic among the route's deployments (1..=10000).
    pub weight: u32,
}

/// Prices, in micro-USD per million tokens (so $0.15 / 1M tokens is 150000).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pricing {
    pub prompt_micro_usd_per_mtok: u64,
    pub completion_micro_usd_per_mtok: u64,
}

impl Pricing {
    /// Cost of a request in micro-USD, rounded up so spend is never under-counted.
    pub fn cost_micro_usd(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        let nano = (u128::from(prompt_tokens) * u128::from(self.prompt_micro_usd_per_mtok))
            .saturating_add(
                u128::from(completion_tokens) * u128::from(self.completion_micro_usd_per_mtok),
            );
        u64::try_from(nano.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// A public model name and where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The model name clients send (`"model": "gpt-4o"`).
    pub name: String,
    pub deployments: Vec<Deployment>,
    /// Other routes to try, in order, when every deployment of this one failed.
    pub fallbacks: Vec<String>,
    pub pricing: Pricing,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl Route {
    /// Checks the fields that do not depend on the rest of the state.
    pub fn validate(&self) -> Result<(), ApplyError> {
        check_model_name("name", &self.name)?;
        if self.deployments.is_empty() {
            return Err(ApplyError::invalid(
                "deployments",
                "at least one deployment is required",
            ));
        }
        if self.deployments.len() > 64 {
            return Err(ApplyError::invalid("deployments", "at most 64 deployments"));
        }
        for (i, d) in self.deployments.iter().enumerate() {
            let at = format!("deployments[{i}]");
            if d.provider.is_empty() {
                return Err(ApplyError::invalid(
                    format!("{at}.provider"),
                    "must name a provider",
                ));
            }
            if d.model.is_empty()
                || d.model.len() > 256
                || d.model.bytes().any(|b| b.is_ascii_control())
            {
                return Err(ApplyError::invalid(
                    format!("{at}.model"),
                    "must be 1-256 characters without control characters",
                ));
            }
            if d.weight == 0 || d.weight > MAX_WEIGHT {
                return Err(ApplyError::invalid(
                    format!("{at}.weight"),
                    format!("must be between 1 and {MAX_WEIGHT}"),
                ));
            }
        }
        if self.fallbacks.len() > 16 {
            return Err(ApplyError::invalid("fallbacks", "at most 16 fallbacks"));
        }
        for (i, f) in self.fallbacks.iter().enumerate() {
            if f == &self.name {
                return Err(ApplyError::invalid(
                    format!("fallbacks[{i}]"),
                    "a route cannot fall back to itself",
                ));
            }
            if self.fallbacks[..i].contains(f) {
                return Err(ApplyError::invalid(
                    format!("fallbacks[{i}]"),
                    "is listed twice",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_rounds_up_and_never_overflows() {
        let p = Pricing {
            prompt_micro_usd_per_mtok: 150_000,
            completion_micro_usd_per_mtok: 600_000,
        };
        assert_eq!(p.cost_micro_usd(1_000_000, 0), 150_000);
        assert_eq!(p.cost_micro_usd(1, 0), 1);
        assert_eq!(p.cost_micro_usd(0, 0), 0);
        let max = Pricing {
            prompt_micro_usd_per_mtok: u64::MAX,
            completion_micro_usd_per_mtok: u64::MAX,
        };
        assert_eq!(max.cost_micro_usd(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn validation_names_the_field() {
        let mut r = Route {
            name: "gpt-4o".into(),
            deployments: vec![Deployment {
                provider: "p".into(),
                model: "gpt-4o".into(),
                weight: 1,
            }],
            fallbacks: vec![],
            pricing: Pricing::default(),
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        assert!(r.validate().is_ok());
        r.deployments[0].weight = 0;
        assert!(
            matches!(r.validate(), Err(ApplyError::Invalid { field, .. }) if field == "deployments[0].weight")
        );
        r.deployments[0].weight = 1;
        r.fallbacks = vec!["gpt-4o".into()];
        assert!(
            matches!(r.validate(), Err(ApplyError::Invalid { field, .. }) if field == "fallbacks[0]")
        );
        r.fallbacks.clear();
        r.deployments.clear();
        assert!(
            matches!(r.validate(), Err(ApplyError::Invalid { field, .. }) if field == "deployments")
        );
    }
}
