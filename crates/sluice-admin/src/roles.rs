//! Which admin token roles may call which endpoint: one table, used both to
//! enforce (a 403 naming the roles needed) and to document (each operation
//! of the OpenAPI document states its roles).
//!
//! * `admin`: everything (the bootstrap token is one);
//! * `operator`: the cluster and its membership, snapshots (export and
//!   restore), and reading everything;
//! * `keys`: virtual keys and their quotas (create, change, revoke,
//!   enable, disable, delete), and reading keys, routes and usage;
//! * `viewer`: reading, but never a snapshot (it holds every sealed secret
//!   and key hash).

use axum::http::Method;
use sluice_core::Role;

const EVERYONE: &[Role] = &[Role::Admin, Role::Operator, Role::Keys, Role::Viewer];
const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Viewer];
const KEY_KEEPERS: &[Role] = &[Role::Admin, Role::Keys];
const OPERATORS: &[Role] = &[Role::Admin, Role::Operator];
const ADMINS: &[Role] = &[Role::Admin];

/// The roles that may call `method` on `path` (an `/admin/v1/…` path or
/// its template, e.g. `/admin/v1/keys/{id}/revoke`).
pub fn allowed(method: &Method, path: &str) -> &'static [Role] {
    let rest = path.strip_prefix("/admin/v1/").unwrap_or(path);
    let under = |area: &str| {
        rest == area
            || rest
                .strip_prefix(area)
                .is_some_and(|tail| tail.starts_with('/'))
    };
    let reading = *method == Method::GET || *method == Method::HEAD;
    if reading {
        if rest == "cluster/snapshot" {
            OPERATORS
        } else if under("keys") || under("routes") || under("usage") {
            EVERYONE
        } else {
            READERS
        }
    } else if under("keys") {
        KEY_KEEPERS
    } else if under("cluster") {
        OPERATORS
    } else {
        ADMINS
    }
}

/// `roles` as prose: "`admin` or `keys`".
pub fn describe(roles: &[Role]) -> String {
    let names: Vec<String> = roles.iter().map(|r| format!("`{r}`")).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reads_as_the_docs_say() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(allowed(&get, "/admin/v1/providers"), READERS);
        assert_eq!(allowed(&post, "/admin/v1/providers"), ADMINS);
        assert_eq!(allowed(&get, "/admin/v1/routes/{name}"), EVERYONE);
        assert_eq!(allowed(&post, "/admin/v1/keys/{id}/revoke"), KEY_KEEPERS);
        assert_eq!(
            allowed(&Method::PUT, "/admin/v1/keys/{id}/routes/{route}/quota"),
            KEY_KEEPERS
        );
        assert_eq!(allowed(&get, "/admin/v1/cluster/snapshot"), OPERATORS);
        assert_eq!(allowed(&post, "/admin/v1/cluster/snapshot"), OPERATORS);
        assert_eq!(
            allowed(&Method::DELETE, "/admin/v1/cluster/members/{id}"),
            OPERATORS
        );
        assert_eq!(allowed(&post, "/admin/v1/tokens"), ADMINS);
        // A prefix is an area only up to a `/`.
        assert_eq!(allowed(&post, "/admin/v1/keysmith"), ADMINS);
        assert_eq!(describe(KEY_KEEPERS), "`admin` or `keys`");
        assert_eq!(
            describe(EVERYONE),
            "`admin`, `operator`, `keys` or `viewer`"
        );
    }
}
