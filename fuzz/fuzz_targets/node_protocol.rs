//! Fuzzes what a node decodes from the control plane and what the control
//! plane decodes from nodes: any bytes are a config update or an error; an
//! update becomes a snapshot (bad connectors rejected alone) that prints
//! back to an update; any event batch converts or fails with violations.
#![no_main]

use hookplane::api::v1 as api;
use hookplane_convert as convert;
use hookplane_data_plane::Snapshot;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(update) = api::ConfigUpdate::decode(data) {
        let (delta, rejected) = convert::config_delta_from_api(&update);
        let (snapshot, _) = Snapshot::default().apply(&delta, rejected);
        let printed = convert::config_delta_to_api(&snapshot.to_full_delta());
        let _ = printed.encode_to_vec();
    }
    if let Ok(batch) = api::ReportEventsRequest::decode(data) {
        for (i, event) in batch.events.into_iter().enumerate() {
            let _ = convert::node_event_from_api(event, i);
        }
    }
});
