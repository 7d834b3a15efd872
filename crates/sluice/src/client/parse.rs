//! Parsers for the admin client's compact flag forms: `provider:model[:weight]`,
//! `KEY=VALUE` and durations such as `30d`.

use sluice_admin::routes::DeploymentBody;

/// `provider:model[:weight]`. The model may itself contain `:` (`llama3:8b`);
/// a trailing all-digit segment is the weight.
pub fn deployment(text: &str) -> Result<DeploymentBody, String> {
    let (provider, rest) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not provider:model[:weight]"))?;
    let (model, weight) = match rest.rsplit_once(':') {
        Some((model, weight))
            if !weight.is_empty() && weight.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let weight = weight
                .parse()
                .map_err(|_| format!("{text:?}: weight {weight} is too large"))?;
            (model, weight)
        }
        _ => (rest, 1),
    };
    if provider.is_empty() || model.is_empty() {
        return Err(format!("{text:?} is not provider:model[:weight]"));
    }
    Ok(DeploymentBody {
        provider: provider.to_string(),
        model: model.to_string(),
        weight,
    })
}

/// `KEY=VALUE` (the value may contain `=`).
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// A duration in seconds: a number followed by `s`, `m`, `h`, `d` or `w`.
pub fn duration_secs(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30d, 12h, 90m or 45s"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{text:?}: the unit must be s, m, h, d or w")),
    };
    match number.checked_mul(scale) {
        Some(0) => Err(format!("{text:?}: must be longer than zero")),
        Some(secs) => Ok(secs),
        None => Err(format!("{text:?} is too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments() {
        let d = deployment("openai:gpt-4o").unwrap();
        assert_eq!(
            (d.provider.as_str(), d.model.as_str(), d.weight),
            ("openai", "gpt-4o", 1)
        );
        let d = deployment("openai:gpt-4o:3").unwrap();
        assert_eq!((d.model.as_str(), d.weight), ("gpt-4o", 3));
        let d = deployment("ollama:llama3:8b").unwrap();
        assert_eq!((d.model.as_str(), d.weight), ("llama3:8b", 1));
        let d = deployment("ollama:llama3:8b:2").unwrap();
        assert_eq!((d.model.as_str(), d.weight), ("llama3:8b", 2));
        assert!(deployment("openai").is_err());
        assert!(deployment(":gpt").is_err());
        assert!(deployment("openai::3").is_err());
        assert!(deployment("p:m:99999999999").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(key_value("a=").unwrap(), ("a".into(), String::new()));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_secs("30d"), Ok(30 * 86_400));
        assert_eq!(duration_secs("90m"), Ok(5400));
        assert_eq!(duration_secs("2w"), Ok(1_209_600));
        assert!(duration_secs("30").is_err());
        assert!(duration_secs("d").is_err());
        assert!(duration_secs("0s").is_err());
        assert!(duration_secs("1y").is_err());
        assert!(duration_secs("99999999999999999999d").is_err());
    }
}
