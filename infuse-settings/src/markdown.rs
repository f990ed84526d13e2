//! The documentation table of the settings, generated from the table.

use crate::{describe, Kind, Rule, Setting, SETTINGS};

/// Every setting as a markdown table: its attribute argument, type, default, limits and
/// rules, meaning, and environment variable. `infuse` commits it as
/// `src/guide/settings_table.md` (a test keeps the file equal to this).
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| Setting | Type | Default | Limits and rules | Meaning | Environment variable |\n\
         |---|---|---|---|---|---|\n",
    );
    for setting in SETTINGS {
        let default = match setting.default {
            Some(value) => format!("`{}`", setting.literal(value)),
            None => format!("unset: {}", setting.unset),
        };
        table.push_str(&format!(
            "| `{}` | {} | {default} | {} | {} | `INFUSE_<SERVICE>_{}` |\n",
            setting.name,
            kind(setting.kind),
            limits(setting),
            setting.meaning,
            setting.env_suffix(),
        ));
    }
    table.push_str(
        "\nDurations are written `\"500ms\"`, `\"15s\"`, `\"2m\"` or as a whole number of \
         seconds (`15`); in an environment variable, without quotes (`15s`). Precedence: \
         environment, then `Config::service`, then the attribute, then the default.\n",
    );
    table
}

fn kind(kind: Kind) -> &'static str {
    match kind {
        Kind::Count => "whole number",
        Kind::Percent => "percentage",
        Kind::Duration => "duration",
        Kind::Bool => "`true` or `false`",
    }
}

/// "≥ 1", "> 0, ≤ 24h; at least `reset_timeout`".
fn limits(setting: &Setting) -> String {
    let mut parts = vec![match setting.kind {
        Kind::Bool => "—".to_owned(),
        Kind::Count if setting.max.0 == i128::from(u32::MAX) => format!("≥ {}", setting.min.0),
        Kind::Count | Kind::Percent => format!("{} to {}", setting.min.0, setting.max.0),
        Kind::Duration => {
            let max = describe(setting.max.as_duration());
            if setting.min.0 > 1 {
                format!("{} to {max}", describe(setting.min.as_duration()))
            } else {
                format!("> 0, ≤ {max}")
            }
        }
    }];
    for rule in setting.rules {
        parts.push(match rule {
            Rule::Needs(other) => format!("needs `{other}`"),
            Rule::Below(other, _) => format!("below `{other}`"),
            Rule::NotBelow(other, _) => format!("at least `{other}`"),
            Rule::Inert(unless, _) => {
                let names: Vec<String> = unless.iter().map(|o| format!("`{o}`")).collect();
                format!("in the attribute, only with {}", names.join(" or "))
            }
        });
    }
    parts.join("; ")
}
