//! The HTTP messages the simulated proxy moves: a [`Request`] as routing
//! and the filters see it, a [`Response`] as the filters and the router
//! answer, and what is decoded to read and edit them: string matchers
//! (`ValueMatch`) and header edits ([`HeaderEdits`]). Nothing here knows
//! a route or a filter; routing, hashing, the listener and the filters
//! build on it.

use std::net::IpAddr;

mod headers;
mod matcher;
pub use headers::HeaderEdits;
pub(crate) use matcher::{full_regex, value_match, ValueMatch};

/// A request as routing sees it. Header names are lowercase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    pub authority: String,
    /// Path with query string, as in `:path`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub source: Option<IpAddr>,
    /// `:method`; empty means GET.
    pub method: String,
    /// The buffered request body, for filters that read it.
    pub body: Option<String>,
}

impl Request {
    pub fn get(authority: &str, path: &str) -> Request {
        Request {
            authority: authority.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    /// `:method` (GET unless set).
    pub fn method(&self) -> &str {
        if self.method.is_empty() {
            "GET"
        } else {
            &self.method
        }
    }

    /// The same request with another method and a body.
    pub fn with_body(mut self, method: &str, body: &str) -> Request {
        self.method = method.into();
        self.body = Some(body.into());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// A header's value; repeated headers are joined with `,` as Envoy does
    /// for matching. Pseudo-headers are looked up too.
    pub fn header_value(&self, name: &str) -> Option<String> {
        match name {
            ":authority" | "host" => return Some(self.authority.clone()),
            ":path" => return Some(self.path.clone()),
            ":method" => return Some(self.method().into()),
            _ => {}
        }
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// The path without query string or fragment.
    pub(crate) fn path_only(&self) -> &str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        &self.path[..end]
    }

    /// The first value of query parameter `name`.
    pub(crate) fn first_query_value(&self, name: &str) -> Option<&str> {
        let q = self.path.split_once('?')?.1;
        let q = q.split('#').next().unwrap_or("");
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

/// An HTTP answer. Header names are lower-case, without `:status`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            ..Response::default()
        }
    }

    /// A local reply as Envoy's `sendLocalReply` makes it: a text body.
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
