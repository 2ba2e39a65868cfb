//! Delta responses: each names what it adds or changes (with a version
//! per resource) and what it removes; nothing else is touched. The versions
//! held are what a reconnect announces in `initial_resource_versions`.

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use sluice_core::xds::TypeUrl;

use super::{no_duplicates, status, Applied, ClientState, Outbound};

impl ClientState {
    /// Handle a delta response (see [`ClientState::on_sotw`]).
    pub fn on_delta(
        &mut self,
        resp: &DeltaDiscoveryResponse,
        reject: Option<String>,
    ) -> (Vec<Outbound>, Option<Applied>) {
        let Some(ty) = TypeUrl::parse(&resp.type_url) else {
            return (vec![], None);
        };
        let decoded = resp
            .resources
            .iter()
            .map(|r| {
                let any = r
                    .resource
                    .as_ref()
                    .ok_or_else(|| format!("resource {:?} has no body", r.name))?;
                let d = self.decode(ty, &any.type_url, &any.value)?;
                if d.name() != r.name {
                    return Err(format!(
                        "resource name {:?} does not match its body's {:?}",
                        r.name,
                        d.name()
                    ));
                }
                Ok((r.version.clone(), d))
            })
            .collect::<Result<Vec<_>, _>>();
        let checked = decoded.and_then(|d| {
            let names = d.iter().map(|(_, x)| x.clone()).collect();
            no_duplicates(ty, names).map(|_| d)
        });
        let result = checked.and_then(|d| match reject {
            Some(why) => Err(why),
            None => Ok(d),
        });
        let version = resp.system_version_info.clone();
        match result {
            Err(error) => {
                let nack = Outbound::Delta(DeltaDiscoveryRequest {
                    type_url: ty.as_str().into(),
                    response_nonce: resp.nonce.clone(),
                    error_detail: Some(status(&error)),
                    ..Default::default()
                });
                let mut out = vec![nack];
                out.extend(self.after_nack(ty));
                (
                    out,
                    Some(Applied {
                        ty,
                        version,
                        error: Some(error),
                    }),
                )
            }
            Ok(resources) => {
                let t = &mut self.types[ty.index()];
                for (v, d) in &resources {
                    t.held.insert(d.name().to_string(), v.clone());
                }
                for name in &resp.removed_resources {
                    t.held.remove(name);
                }
                t.version = version.clone();
                let decoded = resources.into_iter().map(|(_, d)| d).collect();
                self.apply(ty, decoded, &resp.removed_resources);
                let mut out = vec![Outbound::Delta(DeltaDiscoveryRequest {
                    type_url: ty.as_str().into(),
                    response_nonce: resp.nonce.clone(),
                    ..Default::default()
                })];
                out.extend(self.follow_ups());
                (
                    out,
                    Some(Applied {
                        ty,
                        version,
                        error: None,
                    }),
                )
            }
        }
    }
}
