//! PLACEHOLDER: replaced by the drill-local branch.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::local::Endpoint;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    pub counts: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sequences: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_types: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
}

pub fn gather(_endpoint: &Endpoint) -> anyhow::Result<Facts> {
    anyhow::bail!("not yet")
}

pub fn sql_number(_endpoint: &Endpoint, _sql: &str) -> anyhow::Result<f64> {
    anyhow::bail!("not yet")
}
