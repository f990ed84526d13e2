//! The guide: chapters to read in order, every example a doctest.
//!
#![doc = include_str!("index.md")]

#[doc = include_str!("getting_started.md")]
pub mod getting_started {}

#[doc = include_str!("settings.md")]
#[doc = include_str!("settings_table.md")]
#[doc = include_str!("settings_rules.md")]
pub mod settings {}

#[doc = include_str!("semantics.md")]
pub mod semantics {}

#[doc = include_str!("fleet.md")]
pub mod fleet {}

#[doc = include_str!("controls.md")]
pub mod controls {}

// The metrics section needs the feature: its example calls `Config::metrics`.
#[doc = include_str!("observability.md")]
#[cfg_attr(feature = "metrics", doc = include_str!("observability_metrics.md"))]
#[doc = include_str!("observability_next.md")]
pub mod observability {}

// Each integration's section shows (and its example runs) with its cargo feature.
#[doc = include_str!("integrations/intro.md")]
#[cfg_attr(feature = "reqwest", doc = include_str!("integrations/reqwest.md"))]
#[cfg_attr(feature = "axum", doc = include_str!("integrations/axum.md"))]
#[cfg_attr(feature = "tower", doc = include_str!("integrations/tower.md"))]
#[cfg_attr(feature = "tonic", doc = include_str!("integrations/tonic.md"))]
#[doc = include_str!("integrations/next.md")]
pub mod integrations {}

#[doc = include_str!("testing.md")]
pub mod testing {}
