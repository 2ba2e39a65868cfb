//! The ADS streams' gRPC framing, without tonic's per-stream buffers.
//!
//! tonic encodes a server stream's messages into one `BytesMut` that lives
//! as long as the stream and splits each encoded message off it, so the
//! buffer keeps the allocation the largest recent message grew it to; its
//! request decoder does the same with the largest request. An ADS stream's
//! first responses carry the whole configuration (hundreds of KB at
//! topology M1), its first EDS request names every cluster, and the stream
//! then idles for hours: with 1,000 idle M1 streams the retained encode
//! buffers were 520 MB of sluice's 715 MB heap and the decode buffers
//! ~31 MB (heaptrack; docs/benchmarks.md, "Memory of idle streams"). Here
//! each response is encoded into an allocation of exactly its size, freed
//! as soon as h2 has written it, and a request buffer that has grown is
//! dropped once it has been decoded. The wire format is gRPC's (5-byte
//! message header, status in trailers); nothing is compressed.
//!
//! A large resource payload is not copied at all: a response goes out as
//! the chunks [`Chunked`] writes, the shared payload `Bytes` among them
//! (`wire::SHARE_AT`).

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http_body::Frame;
use tonic::codegen::{http, Body, StdError};
use tonic::Status;

use super::wire::{Chunked, Chunks};

/// gRPC's length-prefixed message header: compressed flag + u32 length.
const HEADER_SIZE: usize = 5;

/// A request buffer larger than this is dropped once empty (a delta ACK
/// is a few hundred bytes; a first EDS request at M1 tens of KB).
const KEEP_REQUEST_BUFFER: usize = 4096;

/// Serves one streaming call: `handler` gets the decoded requests and
/// returns the stream of responses, sent as a gRPC body. `max` limits both
/// directions, as tonic's `apply_max_message_size_config` does.
pub(super) async fn streaming<Req, B, F, Fut, S, M>(
    req: http::Request<B>,
    max: usize,
    handler: F,
) -> http::Response<tonic::body::Body>
where
    Req: prost::Message + Default,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send,
    F: FnOnce(Requests<Req>) -> Fut,
    Fut: Future<Output = Result<S, Status>>,
    S: Stream<Item = Result<M, Status>> + Unpin + Send + 'static,
    M: Chunked + 'static,
{
    // Nothing is compressed: a client that compresses its requests is
    // told so, as tonic does when no encoding is enabled.
    if let Some(enc) = req.headers().get("grpc-encoding") {
        if enc != "identity" {
            return Status::unimplemented("sluice does not accept compressed requests").into_http();
        }
    }
    let stream = match handler(Requests::new(req.into_body(), max)).await {
        Ok(stream) => stream,
        Err(status) => return status.into_http(),
    };
    let mut response = http::Response::new(tonic::body::Body::new(ResponseBody {
        stream,
        max,
        pending: VecDeque::new(),
        done: false,
    }));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A stream of messages as a gRPC response body: each message's chunks
/// as data frames, then the status as trailers (OK when the stream ends,
/// or the stream's error).
struct ResponseBody<S> {
    stream: S,
    max: usize,
    /// The rest of the message being sent.
    pending: VecDeque<Bytes>,
    done: bool,
}

impl<S, M> Body for ResponseBody<S>
where
    S: Stream<Item = Result<M, Status>> + Unpin,
    M: Chunked,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(chunk) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let status = match ready!(Pin::new(&mut self.stream).poll_next(cx)) {
            Some(Ok(msg)) => match encode(&msg, self.max) {
                Ok(mut chunks) => {
                    if let Some(first) = chunks.pop_front() {
                        self.pending = chunks;
                        return Poll::Ready(Some(Ok(Frame::data(first))));
                    }
                    // encode always gives at least the header.
                    Status::internal("encoding: no bytes")
                }
                Err(status) => status,
            },
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        self.done = true;
        let mut trailers = http::HeaderMap::new();
        Poll::Ready(Some(
            status
                .add_header(&mut trailers)
                .map(|()| Frame::trailers(trailers)),
        ))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}

/// The requests of one stream, decoded as they arrive.
pub(super) struct Requests<Req> {
    chunks: Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>,
    /// Received bytes not yet decoded.
    buf: BytesMut,
    max: usize,
    ended: bool,
    _req: PhantomData<fn() -> Req>,
}

impl<Req: prost::Message + Default> Requests<Req> {
    fn new<B>(body: B, max: usize) -> Requests<Req>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send,
    {
        let mut body = Box::pin(body);
        let chunks = futures::stream::poll_fn(move |cx| loop {
            match ready!(body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(Status::from_error(e.into())))),
                Some(Ok(frame)) => {
                    // Trailers carry nothing for us.
                    if let Ok(mut data) = frame.into_data() {
                        let bytes = data.copy_to_bytes(data.remaining());
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                }
            }
        });
        Requests {
            chunks: Box::pin(chunks),
            buf: BytesMut::new(),
            max,
            ended: false,
            _req: PhantomData,
        }
    }

    /// The next request; `None` when the client has closed its side.
    /// Cancel safe: received bytes are kept in `self` before any await.
    pub(super) async fn message(&mut self) -> Result<Option<Req>, Status> {
        loop {
            if let Some(req) = self.decode()? {
                return Ok(Some(req));
            }
            if self.ended {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(Status::internal("stream ended inside a message")),
                };
            }
            match self.chunks.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk?),
                None => self.ended = true,
            }
        }
    }

    /// A whole message from the front of the buffer, if there is one.
    fn decode(&mut self) -> Result<Option<Req>, Status> {
        if self.buf.len() < HEADER_SIZE {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(Status::internal(
                "compressed message but no grpc-encoding was accepted",
            ));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max {
            return Err(Status::out_of_range(format!(
                "decoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max
            )));
        }
        if self.buf.len() < HEADER_SIZE + len {
            self.buf.reserve(HEADER_SIZE + len - self.buf.len());
            return Ok(None);
        }
        let req = Req::decode(&self.buf[HEADER_SIZE..HEADER_SIZE + len])
            .map_err(|e| Status::internal(format!("decoding request: {e}")))?;
        self.buf.advance(HEADER_SIZE + len);
        if self.buf.is_empty() && self.buf.capacity() > KEEP_REQUEST_BUFFER {
            self.buf = BytesMut::new();
        }
        Ok(Some(req))
    }
}

/// One length-prefixed gRPC message as chunks ([`Chunks`]): the copied
/// parts in one allocation of exactly their size, the large payloads
/// shared.
fn encode<M: Chunked>(msg: &M, max: usize) -> Result<VecDeque<Bytes>, Status> {
    let len = msg.encoded_len();
    let too_large = || {
        Status::out_of_range(format!(
            "encoded message length too large: found {len} bytes, the limit is: {max} bytes"
        ))
    };
    let header_len = u32::try_from(len).map_err(|_| too_large())?;
    if len > max {
        return Err(too_large());
    }
    let mut out = Chunks::with_capacity(HEADER_SIZE + len.saturating_sub(msg.shared_len()));
    out.buf().put_u8(0);
    out.buf().put_u32(header_len);
    msg.encode_chunks(&mut out);
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

    use super::*;
    use crate::wire::{self, SHARE_AT};

    /// A request body delivered in the given chunks.
    struct InChunks(VecDeque<Bytes>);

    impl Body for InChunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn request(names: usize) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: "t".into(),
            resource_names: (0..names).map(|i| format!("cluster-{i:05}")).collect(),
            ..Default::default()
        }
    }

    /// The whole framed message, as the client receives it.
    fn framed<M: prost::Message>(msg: &M) -> Bytes {
        let mut buf = vec![0u8];
        buf.extend_from_slice(&(msg.encoded_len() as u32).to_be_bytes());
        buf.extend_from_slice(&msg.encode_to_vec());
        buf.into()
    }

    fn requests(chunks: Vec<Bytes>) -> Requests<DiscoveryRequest> {
        Requests::new(InChunks(chunks.into()), 1 << 20)
    }

    #[tokio::test]
    async fn requests_are_decoded_whatever_the_chunking() {
        let (a, b) = (request(3), request(2000));
        let wire = [framed(&a), framed(&b)].concat();
        // One chunk with both, byte by byte, and split inside the header.
        for sizes in [
            vec![wire.len()],
            vec![1; wire.len()],
            vec![3, 4, wire.len() - 7],
        ] {
            let mut chunks = Vec::new();
            let mut at = 0;
            for n in sizes {
                chunks.push(Bytes::copy_from_slice(&wire[at..at + n]));
                at += n;
            }
            let mut reqs = requests(chunks);
            assert_eq!(reqs.message().await.expect("first"), Some(a.clone()));
            assert_eq!(reqs.message().await.expect("second"), Some(b.clone()));
            assert_eq!(reqs.message().await.expect("end"), None);
        }
    }

    #[tokio::test]
    async fn a_large_request_leaves_no_large_buffer_behind() {
        let big = framed(&request(5000));
        assert!(big.len() > 10 * KEEP_REQUEST_BUFFER);
        let mut reqs = requests(vec![big]);
        assert!(reqs.message().await.expect("decodes").is_some());
        assert!(reqs.buf.capacity() <= KEEP_REQUEST_BUFFER);
    }

    #[tokio::test]
    async fn a_request_over_the_limit_or_cut_short_is_an_error() {
        let wire = framed(&request(100));
        let mut reqs = Requests::<DiscoveryRequest>::new(InChunks(vec![wire.clone()].into()), 100);
        let err = reqs.message().await.expect_err("over the limit");
        assert_eq!(err.code(), tonic::Code::OutOfRange);
        let mut reqs = requests(vec![wire.slice(..wire.len() - 1)]);
        assert!(reqs.message().await.is_err());
    }

    #[test]
    fn a_message_is_framed_as_grpc() {
        let msg = wire::DiscoveryResponse {
            version_info: "v1".into(),
            nonce: "7".into(),
            ..Default::default()
        };
        let chunks = encode(&msg, 1024).expect("fits");
        assert_eq!(chunks.len(), 1, "small: one allocation");
        assert_eq!(chunks[0], framed(&msg));
    }

    #[test]
    fn a_message_over_the_limit_is_an_error() {
        let msg = wire::DiscoveryResponse {
            version_info: "x".repeat(100),
            ..Default::default()
        };
        let err = encode(&msg, 10).expect_err("too large");
        assert_eq!(err.code(), tonic::Code::OutOfRange);
    }

    #[test]
    fn a_large_payload_is_sent_without_a_copy() {
        let big = Bytes::from(vec![7u8; SHARE_AT + 1]);
        let small = Bytes::from(vec![9u8; SHARE_AT - 1]);
        let any = |value: &Bytes| wire::Any {
            type_url: "type.googleapis.com/x".into(),
            value: value.clone(),
        };
        let msg = wire::DiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![any(&small), any(&big), any(&small)],
            nonce: "3".into(),
            ..Default::default()
        };
        let chunks = encode(&msg, 1 << 20).expect("fits");
        // Copied prefix (header, version, first resource), the shared
        // payload itself, copied suffix.
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), big.as_ptr(), "the payload is shared");
        assert_eq!(chunks[1].len(), big.len());
        // The client sees exactly the gRPC frame of prost's encoding.
        assert_eq!(Vec::from(chunks).concat(), framed(&msg));
    }
}
