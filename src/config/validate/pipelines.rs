//! The `pipelines` section: which components each pipeline wires together.

use super::*;

/// What the pipelines section resolved to.
pub(super) struct Wiring {
    pub(super) pipelines: Vec<PipelineSpec>,
    pub(super) used_receivers: HashSet<String>,
    pub(super) used_exporters: HashSet<String>,
}

pub(super) fn pipelines(
    section: Option<Value>,
    receivers: &Defined<ReceiverSpec>,
    processors: &Defined<Processor>,
    exporters: &Defined<ExporterSpec>,
    errors: &mut Errors,
) -> Wiring {
    let mut wiring = Wiring {
        pipelines: Vec::new(),
        used_receivers: HashSet::new(),
        used_exporters: HashSet::new(),
    };
    let entries = section_entries("pipelines", section, errors);
    if entries.is_empty() {
        errors.push("pipelines", "at least one pipeline is required");
        return wiring;
    }
    // Contract id → the pipeline that uses it; contract name → its id.
    let mut contract_owner: HashMap<String, String> = HashMap::new();
    let mut contract_names: HashMap<String, String> = HashMap::new();

    for (name, value) in entries {
        let path = join("pipelines", &name);
        let (mark, keys) = (errors.len(), table_keys(&value));
        if name.trim().is_empty() {
            errors.push("pipelines", "pipeline names must not be empty");
            continue;
        }
        let Some(raw) = deserialize::<RawPipeline>(value, &path, errors) else {
            continue;
        };
        let before = errors.len();

        let receivers_path = join(&path, "receivers");
        let receiver_ids = references(
            raw.receivers,
            "receiver",
            receivers,
            &receivers_path,
            errors,
        );
        if receiver_ids.is_empty() && errors.len() == before {
            errors.push(&receivers_path, "must list at least one receiver");
        }

        let processors_path = join(&path, "processors");
        // Whether a contract is listed at all, defined or not (an undefined
        // one is reported as such, not also as "no contract").
        let lists_contract = match &raw.processors {
            Some(Checked(Ok(StringList(ids)))) => ids.iter().any(|id| {
                id.as_deref()
                    .is_ok_and(|id| parse_id(id).is_ok_and(|cid| cid.kind == "contract"))
            }),
            // Absent: reported below; unreadable: reported by `references`.
            Some(Checked(Err(_))) => true,
            None => false,
        };
        let processor_ids = references(
            raw.processors,
            "processor",
            processors,
            &processors_path,
            errors,
        );
        let of_kind = |kind: &str| -> Vec<&String> {
            processor_ids
                .iter()
                .filter(|id| parse_id(id).is_ok_and(|cid| cid.kind == kind))
                .collect()
        };
        let window_ids = of_kind("window");
        let contract_ids = of_kind("contract");
        if window_ids.len() > 1 {
            let listed: Vec<String> = window_ids.iter().map(|id| format!("{id:?}")).collect();
            errors.push(
                &processors_path,
                format!(
                    "lists more than one window processor ({})",
                    listed.join(", ")
                ),
            );
        }
        if !lists_contract {
            errors.push(&processors_path, "must list at least one contract");
        }
        for id in &contract_ids {
            match contract_owner.get(id.as_str()) {
                Some(owner) => errors.push(
                    &processors_path,
                    format!("contract {id:?} is already used by pipeline {owner:?}"),
                ),
                None => {
                    contract_owner.insert(id.to_string(), name.clone());
                }
            }
            let contract_name = parse_id(id)
                .ok()
                .and_then(|cid| cid.name)
                .unwrap_or("contract")
                .to_string();
            match contract_names.get(&contract_name) {
                Some(other) if other != *id => errors.push(
                    &processors_path,
                    format!("contracts {other:?} and {id:?} have the same name {contract_name:?}"),
                ),
                Some(_) => {}
                None => {
                    contract_names.insert(contract_name, id.to_string());
                }
            }
        }

        let exporter_ids = references(
            raw.exporters,
            "exporter",
            exporters,
            &join(&path, "exporters"),
            errors,
        );

        wiring.used_receivers.extend(receiver_ids.iter().cloned());
        wiring.used_exporters.extend(exporter_ids.iter().cloned());
        errors.file_order_since(mark, &path, &keys);
        if errors.len() != before {
            continue;
        }
        // Every referenced component exists; `None` ones were reported
        // already, so a pipeline using one is simply not built.
        let window = match window_ids.first() {
            None => Some(default_window()),
            Some(id) => match processors.get(id.as_str()) {
                Some(Some(Processor::Window(spec))) => Some(spec.clone()),
                _ => None,
            },
        };
        let contracts: Option<Vec<ContractSpec>> = contract_ids
            .iter()
            .map(|id| match processors.get(id.as_str()) {
                Some(Some(Processor::Contract(spec))) => Some(ContractSpec::clone(spec)),
                _ => None,
            })
            .collect();
        if let (Some(window), Some(contracts)) = (window, contracts) {
            wiring.pipelines.push(PipelineSpec {
                name,
                receivers: receiver_ids,
                window,
                contracts,
                exporters: exporter_ids,
            });
        }
    }
    wiring
}

/// The ids a pipeline lists for one kind of component, each checked to be
/// defined and listed once. Returns the defined ids, in the listed order.
pub(super) fn references<T>(
    raw: Field<StringList>,
    what: &str,
    defined: &Defined<T>,
    path: &str,
    errors: &mut Errors,
) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let listed = list_items(raw, path, errors).unwrap_or_default();
    for (i, id) in listed.into_iter().enumerate() {
        if id.is_empty() {
            errors.push(format!("{path}[{i}]"), "must not be empty");
        } else if ids.contains(&id) {
            errors.push(path, format!("lists {what} {id:?} more than once"));
        } else if !defined.contains_key(&id) {
            errors.push(
                path,
                format!("references {what} {id:?} which is not defined"),
            );
        } else {
            ids.push(id);
        }
    }
    ids
}
