//! The routes of `hookplane.v1.NodeSyncService`, written out instead of
//! generated for one reason: `Sync` sends updates encoded once for the
//! whole fleet (`feed.rs`), and the generated server's codec encodes every
//! message anew for every stream. What goes on the wire is exactly the
//! generated `SyncResponse`, encoded by prost; nodes decode it with the
//! generated client. `ReportEvents` is served as generated code would.
//!
//! Measured with 1 000 simulated nodes and 1 000 connectors
//! (`benches/fleet_sync.rs`): cloning and encoding a full snapshot per node
//! made a cold start take 3.9 s and 1.1 GiB.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::{BufMut as _, Bytes};
use hookplane::api::v1 as api;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder};

use super::NodeSyncApi;

const SYNC: &str = "/hookplane.v1.NodeSyncService/Sync";
const REPORT_EVENTS: &str = "/hookplane.v1.NodeSyncService/ReportEvents";

/// The largest `ReportEvents` message taken: a node's batch stops growing
/// once its traces pass 2 MiB, so it holds at most one larger event, and a
/// node sends no trace over 24 MiB (past that, it leaves out the payload
/// and `$processed`). gRPC's default, 4 MiB, refused batches of calls with
/// large payloads, and the node sent them again from its spool on every
/// reconnect, so that no later event got through either.
const MAX_REPORTED_MESSAGE_BYTES: usize = 64 << 20;

/// Serves `hookplane.v1.NodeSyncService` with a [`NodeSyncApi`].
#[derive(Clone, Debug)]
pub struct NodeSyncServer {
    api: NodeSyncApi,
}

impl NodeSyncServer {
    pub fn new(api: NodeSyncApi) -> NodeSyncServer {
        NodeSyncServer { api }
    }
}

impl NamedService for NodeSyncServer {
    const NAME: &'static str = "hookplane.v1.NodeSyncService";
}

impl<B> tower::Service<http::Request<B>> for NodeSyncServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let api = self.api.clone();
        match request.uri().path() {
            SYNC => Box::pin(async move {
                let method = tower::service_fn(move |call| {
                    let api = api.clone();
                    async move { api.sync(call).await }
                });
                Ok(Grpc::new(EncodedUpdates).streaming(method, request).await)
            }),
            REPORT_EVENTS => Box::pin(async move {
                let method = tower::service_fn(move |call| {
                    let api = api.clone();
                    async move { api.report_events(call).await }
                });
                let codec = ProstCodec::<api::ReportEventsResponse, api::ReportEventsRequest>::default();
                let mut grpc = Grpc::new(codec).max_decoding_message_size(MAX_REPORTED_MESSAGE_BYTES);
                Ok(grpc.streaming(method, request).await)
            }),
            _ => Box::pin(async move { Ok(Status::new(Code::Unimplemented, "no such method").into_http()) }),
        }
    }
}

/// `Sync`'s codec: requests decoded by prost; responses are already
/// encoded `SyncResponse`s, copied into the stream as they are.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedUpdates;

impl Codec for EncodedUpdates {
    type Encode = Bytes;
    type Decode = api::SyncRequest;
    type Encoder = CopyEncoded;
    type Decoder = ProstDecoder<api::SyncRequest>;

    fn encoder(&mut self) -> CopyEncoded {
        CopyEncoded
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct CopyEncoded;

impl Encoder for CopyEncoded {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

/// Encodes a response once, for any number of streams.
pub(super) fn encode(response: &api::SyncResponse) -> Bytes {
    Bytes::from(prost::Message::encode_to_vec(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_update_decodes_as_the_response_it_encodes() {
        let response = api::SyncResponse {
            update: Some(api::ConfigUpdate { version: 7, full: true, ..Default::default() }),
            ..Default::default()
        };
        let decoded: api::SyncResponse = prost::Message::decode(encode(&response)).unwrap();
        assert_eq!(decoded, response);
    }
}
