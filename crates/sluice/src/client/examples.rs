//! The `Examples:` section at the end of each command group's help
//! (`sluice keys --help`): commands a newcomer can paste, with the admin
//! URL and token taken from the environment.

/// `Examples:`, the line that sets the node and token up, then `lines`.
macro_rules! examples {
    ($($line:literal)*) => {
        concat!(
            "Examples:\n",
            "  export SLUICE_ADMIN_URL=http://127.0.0.1:7001 SLUICE_ADMIN_TOKEN=\"$(cat admin-token)\"\n",
            "                                         # or paste the export line `sluice dev` printed\n",
            $($line, "\n",)*
        )
    };
}

pub const CLUSTER: &str = examples!(
    "  sluice cluster status                  # leader, term, members and their roles"
    "  sluice cluster doctor                  # quorum, lag, clock skew, certificates"
    "  sluice cluster transfer-leader 2"
    "  sluice cluster snapshot export --out backup.bin"
    "  sluice cluster rotate-ca begin --out ./cluster   # a new CA: begin, reissue, finish"
);
pub const PROVIDERS: &str = examples!(
    "  export UPSTREAM_OPENAI_KEY=sk-...      # your OpenAI account's key, read from the environment"
    "  sluice providers create --name openai --kind openai \\"
    "      --base-url https://api.openai.com/v1 --api-key-env UPSTREAM_OPENAI_KEY"
    "  sluice providers list"
    "  sluice providers get openai --json"
);
pub const ROUTES: &str = examples!(
    "  sluice routes create --name gpt-4o-mini --deployment openai:gpt-4o-mini \\"
    "      --prompt-usd-per-mtok 0.15 --completion-usd-per-mtok 0.6"
    "  sluice routes create --name chat --deployment openai:gpt-4o:3 --deployment azure:gpt-4o:1 \\"
    "      --fallback gpt-4o-mini"
    "  sluice routes list"
);
pub const KEYS: &str = examples!(
    "  sluice keys create --name team-a --route gpt-4o-mini --expires-in 30d   # secret shown once"
    "  sluice keys create --name team-b --rpm 600 --tpm 100000 --budget-usd 25 --budget-period month"
    "  sluice keys list"
    "  sluice keys quota team-b               # a key by its name, or by its id (key_...)"
    "  sluice keys set-quota team-b --route gpt-4o-mini --tpm 20000"
    "  sluice keys spend team-b"
    "  sluice keys disable team-a"
);
pub const TOKENS: &str = examples!(
    "  sluice tokens create --name ops-2026   # the token is shown once"
    "  sluice tokens list"
    "  sluice tokens delete tok_..."
);
pub const USAGE: &str = examples!(
    "  sluice usage --by route --since 1h"
    "  sluice usage --by key --since 7d --csv > spend.csv"
    "  sluice usage --by provider --key team-a --since 24h"
);

pub const AUDIT: &str = examples!(
    "  sluice audit --since 24h"
    "  sluice audit --target provider: --all"
    "  sluice audit --token-id tok_0123456789abcdef --json"
);

#[cfg(test)]
mod tests {
    #[test]
    fn every_group_has_examples_that_name_its_command() {
        for (group, text) in [
            ("cluster", super::CLUSTER),
            ("providers", super::PROVIDERS),
            ("routes", super::ROUTES),
            ("keys", super::KEYS),
            ("tokens", super::TOKENS),
            ("usage", super::USAGE),
            ("audit", super::AUDIT),
        ] {
            assert!(text.starts_with("Examples:\n"), "{text}");
            assert!(
                text.contains(&format!("sluice {group} ")),
                "{group}: {text}"
            );
            assert!(text.contains(":7001"), "init's admin port: {text}");
        }
    }
}
