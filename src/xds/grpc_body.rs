//! The ADS streams' HTTP plumbing, without tonic's per-stream encode buffer.
//!
//! tonic encodes a server stream's messages into one `BytesMut` that lives
//! as long as the stream and splits each encoded message off it, so the
//! buffer keeps the allocation the largest recent message grew it to. An
//! ADS stream's first responses carry the whole configuration (hundreds of
//! KB at topology M1) and the stream then idles for hours: with 1,000 idle
//! M1 streams that retained capacity was 520 MB of sluice's 715 MB heap
//! (heaptrack; docs/benchmarks.md, "Memory of idle streams"). Here each
//! message is encoded into an allocation of exactly its size, freed as
//! soon as h2 has written it. Requests are still decoded by tonic
//! ([`Streaming`]); the wire format (5-byte gRPC message header, status in
//! trailers) is the same.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes};
use futures::Stream;
use http_body::Frame;
use tonic::codec::{BufferSettings, Streaming};
use tonic::codegen::{http, Body, StdError};
use tonic::server::StreamingService;
use tonic::Status;

/// gRPC's length-prefixed message header: compressed flag + u32 length.
const HEADER_SIZE: usize = 5;

/// Serves one streaming call: decodes requests with tonic, hands them to
/// `service`, and returns its response stream as a gRPC body. `max` limits
/// both directions, as tonic's `apply_max_message_size_config` does.
pub(super) async fn streaming<S, Req, B>(
    mut service: S,
    req: http::Request<B>,
    max: usize,
) -> http::Response<tonic::body::Body>
where
    S: StreamingService<Req>,
    S::Response: prost::Message + Send + 'static,
    S::ResponseStream: Unpin + Send + 'static,
    Req: prost::Message + Default + Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send,
{
    // Nothing is compressed: a client that compresses its requests is
    // told so, as tonic does when no encoding is enabled.
    if let Some(enc) = req.headers().get("grpc-encoding") {
        if enc != "identity" {
            return Status::unimplemented("sluice does not accept compressed requests").into_http();
        }
    }
    let decoder =
        tonic_prost::ProstCodec::<S::Response, Req>::raw_decoder(BufferSettings::default());
    let request = req.map(|body| Streaming::new_request(decoder, body, None, Some(max)));
    let stream = match service.call(tonic::Request::from_http(request)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status.into_http(),
    };
    let mut response = http::Response::new(tonic::body::Body::new(ResponseBody {
        stream,
        max,
        done: false,
    }));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A stream of messages as a gRPC response body: one DATA frame per
/// message, then the status as trailers (OK when the stream ends, or the
/// stream's error).
struct ResponseBody<S> {
    stream: S,
    max: usize,
    done: bool,
}

impl<S, M> Body for ResponseBody<S>
where
    S: Stream<Item = Result<M, Status>> + Unpin,
    M: prost::Message,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let status = match ready!(Pin::new(&mut self.stream).poll_next(cx)) {
            Some(Ok(msg)) => match encode(&msg, self.max) {
                Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
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
        self.done
    }
}

/// One length-prefixed gRPC message in an allocation of exactly its size.
fn encode<M: prost::Message>(msg: &M, max: usize) -> Result<Bytes, Status> {
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
    let mut buf = Vec::with_capacity(HEADER_SIZE + len);
    buf.put_u8(0);
    buf.put_u32(header_len);
    msg.encode(&mut buf)
        .map_err(|e| Status::internal(format!("encoding: {e}")))?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
    use prost::Message;

    use super::*;

    #[test]
    fn a_message_is_framed_as_grpc() {
        let msg = DiscoveryResponse {
            version_info: "v1".into(),
            nonce: "7".into(),
            ..Default::default()
        };
        let framed = encode(&msg, 1024).expect("fits");
        assert_eq!(framed[0], 0, "not compressed");
        let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
        assert_eq!(len, framed.len() - HEADER_SIZE);
        let back = DiscoveryResponse::decode(&framed[HEADER_SIZE..]).expect("decodes");
        assert_eq!(back, msg);
    }

    #[test]
    fn a_message_over_the_limit_is_an_error() {
        let msg = DiscoveryResponse {
            version_info: "x".repeat(100),
            ..Default::default()
        };
        let err = encode(&msg, 10).expect_err("too large");
        assert_eq!(err.code(), tonic::Code::OutOfRange);
    }
}
