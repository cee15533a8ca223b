//! A small etcd v3 client: the messages and calls the fleet mode needs
//! (range, put and delete over a key prefix, one prefix watch, leases),
//! over gRPC with tonic.
//!
//! Why not the `etcd-client` crate: it generates its code with `protoc`,
//! which Probe's build does not need anywhere else. The messages below are
//! hand-written prost structs with the field numbers of etcd's own
//! `rpc.proto` and `kv.proto` (stable since etcd 3.0; checked against 3.4,
//! the Debian release the tests run), and `build.rs` generates the client
//! stubs with `tonic_build::manual`, as it does for `probe.v1.Daemon`.
//!
//! Only plain `http://` endpoints for now (no TLS or auth to etcd).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// etcd's messages (only the fields Probe reads or sets; unknown fields
/// are skipped by prost, so newer servers are fine).
#[allow(clippy::derive_partial_eq_without_eq)]
pub mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseHeader {
        #[prost(uint64, tag = "1")]
        pub cluster_id: u64,
        #[prost(uint64, tag = "2")]
        pub member_id: u64,
        /// The store's revision when the request was applied.
        #[prost(int64, tag = "3")]
        pub revision: i64,
        #[prost(uint64, tag = "4")]
        pub raft_term: u64,
    }

    /// `mvccpb.KeyValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(int64, tag = "2")]
        pub create_revision: i64,
        #[prost(int64, tag = "3")]
        pub mod_revision: i64,
        #[prost(int64, tag = "4")]
        pub version: i64,
        #[prost(bytes = "vec", tag = "5")]
        pub value: Vec<u8>,
        #[prost(int64, tag = "6")]
        pub lease: i64,
    }

    /// `mvccpb.Event`; `r#type`: 0 PUT, 1 DELETE.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(message, optional, tag = "2")]
        pub kv: Option<KeyValue>,
        #[prost(message, optional, tag = "3")]
        pub prev_kv: Option<KeyValue>,
    }

    pub const EVENT_PUT: i32 = 0;
    pub const EVENT_DELETE: i32 = 1;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        /// `[key, range_end)`; the key "plus one" selects a prefix.
        #[prost(bytes = "vec", tag = "2")]
        pub range_end: Vec<u8>,
        #[prost(int64, tag = "3")]
        pub limit: i64,
        #[prost(int64, tag = "4")]
        pub revision: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(message, repeated, tag = "2")]
        pub kvs: Vec<KeyValue>,
        #[prost(bool, tag = "3")]
        pub more: bool,
        #[prost(int64, tag = "4")]
        pub count: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
        /// A lease id (0: none): the key is deleted when the lease expires.
        #[prost(int64, tag = "3")]
        pub lease: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeleteRangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub range_end: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeleteRangeResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(int64, tag = "2")]
        pub deleted: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchRequest {
        #[prost(oneof = "watch_request::RequestUnion", tags = "1, 2")]
        pub request_union: Option<watch_request::RequestUnion>,
    }

    pub mod watch_request {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum RequestUnion {
            #[prost(message, tag = "1")]
            CreateRequest(super::WatchCreateRequest),
            #[prost(message, tag = "2")]
            CancelRequest(super::WatchCancelRequest),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchCreateRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub range_end: Vec<u8>,
        /// Inclusive; 0: from now.
        #[prost(int64, tag = "3")]
        pub start_revision: i64,
        #[prost(bool, tag = "4")]
        pub progress_notify: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchCancelRequest {
        #[prost(int64, tag = "1")]
        pub watch_id: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(int64, tag = "2")]
        pub watch_id: i64,
        #[prost(bool, tag = "3")]
        pub created: bool,
        #[prost(bool, tag = "4")]
        pub canceled: bool,
        /// Set when the requested start revision was compacted away.
        #[prost(int64, tag = "5")]
        pub compact_revision: i64,
        #[prost(string, tag = "6")]
        pub cancel_reason: String,
        #[prost(bool, tag = "7")]
        pub fragment: bool,
        #[prost(message, repeated, tag = "11")]
        pub events: Vec<Event>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LeaseGrantRequest {
        /// Seconds.
        #[prost(int64, tag = "1")]
        pub ttl: i64,
        /// 0: etcd picks one.
        #[prost(int64, tag = "2")]
        pub id: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LeaseGrantResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(int64, tag = "2")]
        pub id: i64,
        #[prost(int64, tag = "3")]
        pub ttl: i64,
        #[prost(string, tag = "4")]
        pub error: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LeaseKeepAliveRequest {
        #[prost(int64, tag = "1")]
        pub id: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LeaseKeepAliveResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(int64, tag = "2")]
        pub id: i64,
        /// Seconds left; 0 or less: the lease is gone.
        #[prost(int64, tag = "3")]
        pub ttl: i64,
    }

    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.KV.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.Watch.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.Lease.rs"));
}

use pb::{
    k_v_client::KVClient as KvClient, lease_client::LeaseClient, watch_client::WatchClient,
    KeyValue,
};

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("invalid etcd endpoint {0:?}: expected http://HOST:PORT")]
    Endpoint(String),
    #[error("etcd ({endpoints}): {message}")]
    Rpc { endpoints: String, message: String },
    /// The watch's start revision is older than etcd's history: list again.
    #[error("etcd compacted its history past revision {wanted} (oldest kept: {compacted})")]
    Compacted { wanted: i64, compacted: i64 },
    #[error("etcd canceled the watch: {0}")]
    Canceled(String),
    #[error("etcd ended the watch stream")]
    Closed,
    #[error("etcd lease {0:x} expired")]
    LeaseExpired(i64),
}

/// How long a unary call may take before etcd counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to an etcd cluster (cheap to clone; reconnects by itself).
#[derive(Clone)]
pub struct Etcd {
    endpoints: String,
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    lease: LeaseClient<Channel>,
}

/// The end of the key range holding every key that starts with `prefix`
/// (etcd's "prefix plus one").
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): to the end of the keyspace.
    vec![0]
}

impl Etcd {
    /// A client of the cluster at `endpoints` (comma-separated `http://HOST:PORT`).
    /// Nothing is dialled yet: calls connect (and reconnect) as needed, so a
    /// daemon can start while etcd is down.
    pub fn new(endpoints: &str) -> Result<Self, EtcdError> {
        let mut eps = vec![];
        for e in endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if !e.starts_with("http://") {
                return Err(EtcdError::Endpoint(e.to_owned()));
            }
            let ep = Endpoint::from_shared(e.to_owned())
                .map_err(|_| EtcdError::Endpoint(e.to_owned()))?
                .connect_timeout(Duration::from_secs(3))
                // A dead etcd (or a cut network) must break the watch
                // stream within seconds, not after TCP's minutes.
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true);
            eps.push(ep);
        }
        let channel = match eps.len() {
            0 => return Err(EtcdError::Endpoint(endpoints.to_owned())),
            1 => eps.pop().expect("one").connect_lazy(),
            _ => Channel::balance_list(eps.into_iter()),
        };
        Ok(Self {
            endpoints: endpoints.to_owned(),
            kv: KvClient::new(channel.clone()),
            watch: WatchClient::new(channel.clone()),
            lease: LeaseClient::new(channel),
        })
    }

    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    fn rpc(&self, s: tonic::Status) -> EtcdError {
        let message = if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::Unknown {
            // The innermost cause ("Connection refused", "broken pipe") is
            // what an operator needs; tonic's wrappers around it are noise.
            let mut cause: &dyn std::error::Error = &s;
            while let Some(next) = cause.source() {
                cause = next;
            }
            format!("unreachable: {cause}")
        } else {
            format!("{:?}: {}", s.code(), s.message())
        };
        EtcdError::Rpc {
            endpoints: self.endpoints.clone(),
            message,
        }
    }

    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, EtcdError> {
        match tokio::time::timeout(CALL_TIMEOUT, f).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(self.rpc(s)),
            Err(_) => Err(EtcdError::Rpc {
                endpoints: self.endpoints.clone(),
                message: format!("no answer within {CALL_TIMEOUT:?}"),
            }),
        }
    }

    /// Every key under `prefix`, and the store revision they were read at.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let req = pb::RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            ..Default::default()
        };
        let mut kv = self.kv.clone();
        let r = self.timed(kv.range(req)).await?;
        let rev = r.header.map_or(0, |h| h.revision);
        Ok((r.kvs, rev))
    }

    /// One key's value.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let req = pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let mut kv = self.kv.clone();
        Ok(self.timed(kv.range(req)).await?.kvs.into_iter().next())
    }

    /// Sets `key` (attached to `lease` unless 0); returns the new store revision.
    pub async fn put(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<i64, EtcdError> {
        let req = pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            lease,
        };
        let mut kv = self.kv.clone();
        Ok(self
            .timed(kv.put(req))
            .await?
            .header
            .map_or(0, |h| h.revision))
    }

    /// Deletes `key`; returns how many keys went (0 or 1).
    pub async fn delete(&self, key: &str) -> Result<i64, EtcdError> {
        let req = pb::DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            range_end: vec![],
        };
        let mut kv = self.kv.clone();
        Ok(self.timed(kv.delete_range(req)).await?.deleted)
    }

    /// A lease of `ttl` (seconds); keys put with it go when it expires.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let req = pb::LeaseGrantRequest {
            ttl: ttl.as_secs().max(1) as i64,
            id: 0,
        };
        let mut lease = self.lease.clone();
        let r = self.timed(lease.lease_grant(req)).await?;
        if !r.error.is_empty() {
            return Err(EtcdError::Rpc {
                endpoints: self.endpoints.clone(),
                message: r.error,
            });
        }
        Ok(r.id)
    }

    /// Keeps lease `id` alive, refreshing every `every`, until the stream
    /// breaks or the lease is gone (both are errors: the caller starts over).
    pub async fn keep_alive(&self, id: i64, every: Duration) -> Result<(), EtcdError> {
        let (tx, rx) = mpsc::channel(4);
        let mut lease = self.lease.clone();
        let mut inbound = self
            .timed(lease.lease_keep_alive(ReceiverStream::new(rx)))
            .await?;
        loop {
            if tx.send(pb::LeaseKeepAliveRequest { id }).await.is_err() {
                return Err(EtcdError::Closed);
            }
            match tokio::time::timeout(CALL_TIMEOUT, inbound.message()).await {
                Ok(Ok(Some(r))) if r.ttl > 0 => {}
                Ok(Ok(Some(_))) => return Err(EtcdError::LeaseExpired(id)),
                Ok(Ok(None)) => return Err(EtcdError::Closed),
                Ok(Err(s)) => return Err(self.rpc(s)),
                Err(_) => {
                    return Err(EtcdError::Rpc {
                        endpoints: self.endpoints.clone(),
                        message: "lease keep-alive unanswered".into(),
                    })
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Watches every key under `prefix` from revision `from` (inclusive).
    /// Returns once etcd has confirmed the watch.
    pub async fn watch(&self, prefix: &str, from: i64) -> Result<Watcher, EtcdError> {
        let (tx, rx) = mpsc::channel(4);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(prefix.as_bytes()),
                    start_revision: from,
                    // Keeps the stream busy enough that a broken
                    // connection is noticed; the revision also advances.
                    progress_notify: true,
                },
            )),
        };
        tx.send(create).await.map_err(|_| EtcdError::Closed)?;
        let mut client = self.watch.clone();
        let mut inbound = self.timed(client.watch(ReceiverStream::new(rx))).await?;
        let mut w = Watcher {
            etcd: self.clone(),
            _requests: tx,
            pending: vec![],
            from,
            inbound: None,
        };
        // The first answer says whether the watch exists; events may follow
        // in the same stream before we ask for them, so keep any.
        loop {
            let r = match tokio::time::timeout(CALL_TIMEOUT, inbound.message()).await {
                Ok(Ok(Some(r))) => r,
                Ok(Ok(None)) => return Err(EtcdError::Closed),
                Ok(Err(s)) => return Err(self.rpc(s)),
                Err(_) => {
                    return Err(EtcdError::Rpc {
                        endpoints: self.endpoints.clone(),
                        message: "the watch was not confirmed".into(),
                    })
                }
            };
            w.check(&r)?;
            let created = r.created;
            w.pending.extend(r.events);
            if created {
                break;
            }
        }
        w.inbound = Some(inbound);
        Ok(w)
    }
}

/// An open prefix watch.
pub struct Watcher {
    etcd: Etcd,
    /// Dropping it ends the request stream (and so the watch).
    _requests: mpsc::Sender<pb::WatchRequest>,
    pending: Vec<pb::Event>,
    from: i64,
    inbound: Option<tonic::Streaming<pb::WatchResponse>>,
}

impl Watcher {
    fn check(&self, r: &pb::WatchResponse) -> Result<(), EtcdError> {
        if r.compact_revision != 0 {
            return Err(EtcdError::Compacted {
                wanted: self.from,
                compacted: r.compact_revision,
            });
        }
        if r.canceled {
            return Err(EtcdError::Canceled(if r.cancel_reason.is_empty() {
                "no reason given".into()
            } else {
                r.cancel_reason.clone()
            }));
        }
        Ok(())
    }

    /// The next batch of events (possibly empty: a progress notification).
    /// Any error ends the watch: list again, then watch from the listed revision.
    pub async fn next(&mut self) -> Result<Vec<pb::Event>, EtcdError> {
        if !self.pending.is_empty() {
            return Ok(std::mem::take(&mut self.pending));
        }
        let inbound = self.inbound.as_mut().ok_or(EtcdError::Closed)?;
        match inbound.message().await {
            Ok(Some(r)) => {
                self.check(&r)?;
                Ok(r.events)
            }
            Ok(None) => Err(EtcdError::Closed),
            Err(s) => Err(self.etcd.rpc(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/probe/"), b"/probe0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn field_numbers_match_etcd() {
        use prost::Message;
        // A PutRequest{key:"k", value:"v", lease:5} as etcd's Go client encodes it.
        let put = pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            lease: 5,
        };
        assert_eq!(put.encode_to_vec(), b"\x0a\x01k\x12\x01v\x18\x05");
        // A WatchResponse with one DELETE event (events are field 11).
        let r = pb::WatchResponse {
            events: vec![pb::Event {
                r#type: pb::EVENT_DELETE,
                kv: Some(KeyValue {
                    key: b"k".to_vec(),
                    mod_revision: 9,
                    ..Default::default()
                }),
                prev_kv: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            r.encode_to_vec(),
            b"\x5a\x09\x08\x01\x12\x05\x0a\x01k\x18\x09".to_vec()
        );
        assert!(Etcd::new("127.0.0.1:2379").is_err());
    }
}
