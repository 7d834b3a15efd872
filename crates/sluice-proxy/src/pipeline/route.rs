//! Phase 3, route: the route named by the request's `model`, which the key
//! must be allowed to use.

use sluice_core::{Route, State, VirtualKey};

use crate::error::ProxyError;

/// The route `model` names in `state`, if `key` may use it.
pub(crate) fn resolve<'s>(
    state: &'s State,
    key: &VirtualKey,
    model: &str,
) -> Result<&'s Route, ProxyError> {
    let route = state
        .route(model)
        .ok_or_else(|| ProxyError::unknown_model(model))?;
    if !key.allows_route(&route.name) {
        return Err(ProxyError::model_not_allowed(model));
    }
    Ok(route)
}
