//! Checks across sections: listener conflicts, the request budget, probe
//! targets and the subject attributes of flag names.

use super::*;

/// A listen address as compared for conflicts.
pub(super) struct Listen {
    host: String,
    port: u16,
    wildcard: bool,
}

impl Listen {
    fn parse(endpoint: &str) -> Option<Self> {
        if let Ok(addr) = endpoint.parse::<SocketAddr>() {
            return Some(Self {
                host: addr.ip().to_string(),
                port: addr.port(),
                wildcard: addr.ip().is_unspecified(),
            });
        }
        let (host, port) = endpoint.rsplit_once(':')?;
        let host = host.to_ascii_lowercase();
        Some(Self {
            host: if host == "localhost" {
                "127.0.0.1".to_string()
            } else {
                host
            },
            port: port.parse().ok()?,
            wildcard: false,
        })
    }

    /// Whether binding both would fail: same port (not 0 = any) and the same
    /// host, or either on every interface.
    fn conflicts(&self, other: &Self) -> bool {
        self.port != 0
            && self.port == other.port
            && (self.host == other.host || self.wildcard || other.wildcard)
    }
}

/// Two listeners (receivers in use, exporters in use, the API) on one address.
pub(super) fn check_listeners(
    receivers: &[ReceiverSpec],
    exporters: &[ExporterSpec],
    service: Option<&ServiceSpec>,
    errors: &mut Errors,
) {
    let mut listeners: Vec<(String, &str)> = Vec::new();
    for receiver in receivers {
        let ReceiverKind::Otlp(otlp) = &receiver.kind else {
            continue;
        };
        let base = format!("receivers.{}.protocols", receiver.id);
        if let Some(endpoint) = &otlp.grpc_endpoint {
            listeners.push((format!("{base}.grpc.endpoint"), endpoint));
        }
        if let Some(endpoint) = &otlp.http_endpoint {
            listeners.push((format!("{base}.http.endpoint"), endpoint));
        }
    }
    for exporter in exporters {
        if let ExporterKind::Prometheus { endpoint, .. } = &exporter.kind {
            listeners.push((format!("exporters.{}.endpoint", exporter.id), endpoint));
        }
    }
    if let Some(service) = service {
        listeners.push(("service.api.endpoint".to_string(), &service.api_endpoint));
    }
    let parsed: Vec<Option<Listen>> = listeners.iter().map(|(_, e)| Listen::parse(e)).collect();
    for (i, (path, endpoint)) in listeners.iter().enumerate() {
        let Some(mine) = &parsed[i] else { continue };
        let earlier = listeners[..i]
            .iter()
            .zip(&parsed[..i])
            .find(|(_, theirs)| theirs.as_ref().is_some_and(|t| mine.conflicts(t)));
        if let Some(((other_path, other_endpoint), _)) = earlier {
            let also = if endpoint == other_endpoint {
                String::new()
            } else {
                format!(" ({other_endpoint})")
            };
            errors.push(
                path.as_str(),
                format!("{endpoint} is already used by {other_path}{also}"),
            );
        }
    }
}

/// A request larger than the whole in-flight budget could never be accepted:
/// clients would retry it forever.
pub(super) fn check_request_budget(
    receivers: &[ReceiverSpec],
    service: &ServiceSpec,
    errors: &mut Errors,
) {
    for receiver in receivers {
        let ReceiverKind::Otlp(otlp) = &receiver.kind else {
            continue;
        };
        if otlp.max_request_bytes > service.max_inflight_bytes {
            errors.push(
                format!("receivers.{}.max_request_bytes", receiver.id),
                format!(
                    "must not exceed service.max_inflight_bytes ({}), got {}: such a request could never be accepted",
                    human_bytes(service.max_inflight_bytes),
                    human_bytes(otlp.max_request_bytes)
                ),
            );
        }
    }
}

/// A probe whose resource no contract of its pipeline selects, or that lacks
/// an attribute a selecting contract names its runs by, would send traffic
/// that counts for nothing.
pub(super) fn check_probe_targets(
    receivers: &[ReceiverSpec],
    pipelines: &[PipelineSpec],
    errors: &mut Errors,
) {
    for pipeline in pipelines {
        let contracts = &pipeline.contracts;
        for receiver in receivers
            .iter()
            .filter(|r| pipeline.receivers.contains(&r.id))
        {
            let ReceiverKind::Probe(probe) = &receiver.kind else {
                continue;
            };
            let path = format!("receivers.{}.resource", receiver.id);
            let selections = select_resource(&probe.resource, contracts);
            for (contract, selection) in &selections {
                if let Selection::MissingAttribute(key) = selection {
                    errors.push(
                        &path,
                        format!(
                            "lacks {key:?}, which contract {:?} of pipeline {:?} names its runs by (subject_by)",
                            contracts[*contract as usize].name, pipeline.name
                        ),
                    );
                }
            }
            if selections.is_empty() {
                errors.push(
                    &path,
                    format!(
                        "matches no contract of pipeline {:?}: its requests would count for nothing",
                        pipeline.name
                    ),
                );
            }
        }
    }
}

/// An `unleash` flag that names an attribute a contract of its pipeline does
/// not name its runs by could never be filled in: every run would fail to
/// find its flag.
pub(super) fn check_flag_templates(
    exporters: &[ExporterSpec],
    pipelines: &[PipelineSpec],
    errors: &mut Errors,
) {
    for exporter in exporters {
        let ExporterKind::Unleash(spec) = &exporter.kind else {
            continue;
        };
        for pipeline in pipelines
            .iter()
            .filter(|p| p.exporters.contains(&exporter.id))
        {
            for contract in &pipeline.contracts {
                for attribute in spec.flag.attributes() {
                    if !contract.subject_by.iter().any(|a| a == attribute) {
                        errors.push(
                            format!("exporters.{}.flag", exporter.id),
                            format!(
                                "{{{attribute}}} is not an attribute contract {:?} of pipeline {:?} names its runs by (subject_by: [{}])",
                                contract.name,
                                pipeline.name,
                                contract.subject_by.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// `256MiB`, `1GiB`, `1500B`: the largest binary unit that divides exactly.
pub(super) fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    UNITS
        .iter()
        .find(|(_, size)| bytes >= *size && bytes.is_multiple_of(*size))
        .map_or_else(
            || format!("{bytes}B"),
            |(unit, size)| format!("{}{unit}", bytes / size),
        )
}
