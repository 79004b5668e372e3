//! The YAML shapes more than one section takes (`timeouts`, a client `tls`
//! block); each section's own shape is in its file, the top level in
//! `mod.rs`. Every struct `deny_unknown_fields`; nothing here is trusted.

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub header_read: Option<String>,
    pub upstream_connect: Option<String>,
    pub upstream_response: Option<String>,
    pub drain: Option<String>,
    pub tunnel_idle: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}
