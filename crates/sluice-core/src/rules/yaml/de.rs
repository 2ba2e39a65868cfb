//! [`Events`]: granit-parser's event stream as a serde `Deserializer`, with
//! no YAML tree in between.
//!
//! marked-yaml builds a node per scalar (~2.8 KB per small list entry with
//! `from_node`) before serde sees anything; here each event goes straight
//! into the raw struct being built, so memory is the raw structs plus one
//! event of look-ahead. The path of keys and indexes down to the current
//! node is kept (borrowed from the text where it can be) so an error names
//! its field; the deserializer places every error at the innermost node
//! that failed.
//!
//! Scalars follow marked-yaml's rules as sluice loads with it (coercion
//! on, whatever the quoting), which the raw structs and their tests rely
//! on: every scalar is a string to serde; a present key is always `Some`
//! (`key:` is `Some("")`, `key: null` is `Some("null")`); an empty scalar
//! reads as an empty list, mapping or struct; booleans are
//! `true`/`True`/`TRUE`/`false`/`False`/`FALSE`; numbers are parsed from
//! the text. Anchors, aliases, tags and non-scalar keys are refused,
//! duplicate keys too.

use std::borrow::Cow;

use granit_parser::{Event, Parser, ScalarStyle, StrInput};
use serde::de::value::{BorrowedStrDeserializer, StrDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess};
use serde::de::{Deserializer, Visitor};

use super::error::{Error, ErrorKind, Unsupported};
use super::keys::KeySet;
use super::spanned::{packed, Marker, SPANNED_MARKER};

/// One step of a field path.
enum Segment<'de> {
    Key(Cow<'de, str>),
    Index(usize),
}

/// What the next node is, without consuming it (for the loader's own walk
/// of the top of the file).
#[derive(Debug, PartialEq, Eq)]
pub enum NodeStart<'a> {
    Mapping(Marker),
    Sequence(Marker),
    /// `plain` is false for quoted and block scalars.
    Scalar {
        value: &'a str,
        plain: bool,
        at: Marker,
    },
    /// The end of the enclosing list or mapping, or of the document.
    End(Marker),
}

/// The parser, one event of look-ahead, and where in the document we are.
pub struct Events<'de> {
    text: &'de str,
    parser: Parser<'de, StrInput<'de>>,
    peeked: Option<(Event<'de>, Marker)>,
    /// Open lists and mappings.
    depth: usize,
    /// Events taken so far: an entry that failed before taking any is
    /// skipped whole.
    taken: u64,
    /// The path of the node being read, under `base`.
    base: String,
    path: Vec<Segment<'de>>,
    /// While an entry is read ([`Events::entry`]): the depth of its
    /// mapping, and its `name` once seen, for the loader to tell references
    /// to a broken entry from dangling ones.
    entry_depth: Option<usize>,
    entry_name: Option<Cow<'de, str>>,
    /// Where the last mapping key read is: an error serde raises between
    /// a key and its value (`duplicate_field`) belongs there.
    last_key: Marker,
}

impl<'de> Events<'de> {
    pub fn new(text: &'de str) -> Events<'de> {
        Events {
            text,
            parser: Parser::new_from_str(text),
            peeked: None,
            depth: 0,
            taken: 0,
            base: String::new(),
            path: Vec::new(),
            entry_depth: None,
            entry_name: None,
            last_key: Marker::default(),
        }
    }

    // ---- the loader's walk -------------------------------------------

    /// Reads up to the first document's content. `false` for a file with
    /// no document at all (empty, or only comments).
    pub fn start_document(&mut self) -> Result<bool, Error> {
        if matches!(self.peek_event()?, Event::StreamStart) {
            self.take()?;
        }
        match self.peek_event()? {
            Event::DocumentStart(..) => {
                self.take()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The next node, not consumed. Anchors, aliases and tags are refused
    /// here as everywhere.
    pub fn peek_node(&mut self) -> Result<NodeStart<'_>, Error> {
        self.check_next()?;
        let (event, at) = self.peek()?;
        let at = *at;
        Ok(match event {
            Event::MappingStart(..) => NodeStart::Mapping(at),
            Event::SequenceStart(..) => NodeStart::Sequence(at),
            Event::Scalar(value, style, ..) => NodeStart::Scalar {
                value,
                plain: *style == ScalarStyle::Plain,
                at,
            },
            _ => NodeStart::End(at),
        })
    }

    /// Where the next node starts.
    pub fn next_at(&mut self) -> Result<Marker, Error> {
        self.peek().map(|(_, at)| *at)
    }

    /// Consumes the start of the mapping or list [`Events::peek_node`]
    /// showed.
    pub fn enter(&mut self) -> Result<(), Error> {
        self.take().map(drop)
    }

    /// The next key of the mapping just entered, or `None` at its end
    /// (consumed). `seen` catches a key written twice.
    pub fn next_key(
        &mut self,
        seen: &mut KeySet<'de>,
    ) -> Result<Option<(Cow<'de, str>, Marker)>, Error> {
        let (event, at) = self.take_node()?;
        match event {
            Event::MappingEnd => Ok(None),
            Event::Scalar(key, ..) => {
                if let Some(first_line) = seen.insert(key.clone(), at) {
                    self.path.push(Segment::Key(key.clone()));
                    let path = self.path_string();
                    self.path.pop();
                    let kind = ErrorKind::DuplicateKey {
                        key: key.into_owned(),
                        first_line,
                    };
                    return Err(Error::at(kind, at, path));
                }
                self.last_key = at;
                Ok(Some((key, at)))
            }
            _ => Err(self.placed(ErrorKind::KeyNotScalar, at)),
        }
    }

    /// Where the key [`Events::next_key`] last returned is.
    pub fn last_key(&self) -> Marker {
        self.last_key
    }

    /// `true` if the list just entered has another item; its end is
    /// consumed.
    pub fn next_item(&mut self) -> Result<bool, Error> {
        if matches!(self.peek_event()?, Event::SequenceEnd) {
            self.take()?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Reads the next node as a `T` whose errors are reported under `path`
    /// (`services[3]`). On an error the rest of the node is skipped, so the
    /// caller can go on with the next entry; only a syntax error (fatal)
    /// leaves the stream unusable.
    pub fn entry<T: DeserializeOwned>(&mut self, path: &str) -> Result<T, EntryError<'de>> {
        self.base.clear();
        self.base.push_str(path);
        self.path.clear();
        self.entry_depth = Some(self.depth);
        self.entry_name = None;
        let (depth, taken) = (self.depth, self.taken);
        let result = T::deserialize(&mut *self);
        self.entry_depth = None;
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let name = self.entry_name.take();
        let error = if error.is_fatal() {
            error
        } else {
            match self.recover(depth, taken) {
                Ok(()) => error,
                Err(fatal) => fatal,
            }
        };
        Err(EntryError { error, name })
    }

    /// Skips the next node whole.
    pub fn skip_node(&mut self) -> Result<(), Error> {
        let depth = self.depth;
        loop {
            self.take()?;
            if self.depth == depth {
                return Ok(());
            }
        }
    }

    /// After a failed entry: consumes what is left of it.
    fn recover(&mut self, depth: usize, taken: u64) -> Result<(), Error> {
        if self.taken == taken {
            return self.skip_node();
        }
        while self.depth > depth {
            self.take()?;
        }
        Ok(())
    }

    // ---- events ------------------------------------------------------

    fn fill(&mut self) -> Result<(), Error> {
        if self.peeked.is_some() {
            return Ok(());
        }
        match self.parser.next_event() {
            Some(Ok((event, span))) => {
                let at = Marker::new(span.start.line(), span.start.col() + 1);
                let event = match event {
                    Event::Scalar(value, style, anchor, tag)
                        if value == "~" && !self.written_tilde(&span) =>
                    {
                        Event::Scalar(Cow::Borrowed(""), style, anchor, tag)
                    }
                    other => other,
                };
                self.peeked = Some((event, at));
                Ok(())
            }
            Some(Err(e)) => {
                let m = e.marker();
                let at = Marker::new(m.line(), m.col() + 1);
                Err(Error::at(ErrorKind::Syntax(e.info()), at, String::new()))
            }
            None => Err(Error::new(ErrorKind::Syntax(
                "unexpected end of the YAML stream".into(),
            ))),
        }
    }

    /// granit-parser reads a node left empty (`key:`) as `~`, which
    /// yaml-rust2 (under marked-yaml) read as `""`: the raw structs rely on
    /// the latter (`Some("")`, an empty list). A `~` really written is the
    /// one-character scalar at its own position.
    fn written_tilde(&self, span: &granit_parser::Span) -> bool {
        let one_char = span.end.index() == span.start.index() + 1;
        let at = span.start.byte_offset();
        one_char && at.is_some_and(|i| self.text.as_bytes().get(i) == Some(&b'~'))
    }

    fn peek(&mut self) -> Result<&(Event<'de>, Marker), Error> {
        self.fill()?;
        self.peeked
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Syntax("no event".into())))
    }

    fn peek_event(&mut self) -> Result<&Event<'de>, Error> {
        self.peek().map(|(event, _)| event)
    }

    /// The next event, consumed, keeping `depth` and `taken`.
    fn take(&mut self) -> Result<(Event<'de>, Marker), Error> {
        self.fill()?;
        let (event, at) = self
            .peeked
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Syntax("no event".into())))?;
        self.taken += 1;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => self.depth += 1,
            Event::SequenceEnd | Event::MappingEnd => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        Ok((event, at))
    }

    /// Refuses an anchor, alias or tag on the next node before anything
    /// reads it.
    fn check_next(&mut self) -> Result<(), Error> {
        let (event, at) = self.peek()?;
        let unsupported = match event {
            Event::Scalar(_, _, anchor, tag)
            | Event::SequenceStart(_, anchor, tag)
            | Event::MappingStart(_, anchor, tag) => {
                if *anchor != 0 {
                    Some(Unsupported::Anchors)
                } else if tag.is_some() {
                    Some(Unsupported::Tags)
                } else {
                    None
                }
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) | Event::Anchor(..) => {
                Some(Unsupported::Anchors)
            }
            _ => None,
        };
        match unsupported {
            Some(what) => {
                let at = *at;
                Err(self.placed(ErrorKind::Unsupported(what), at))
            }
            None => Ok(()),
        }
    }

    /// The next event, refused if it carries an anchor, alias or tag.
    fn take_node(&mut self) -> Result<(Event<'de>, Marker), Error> {
        self.check_next()?;
        self.take()
    }

    /// The next event if it is an empty scalar (which reads as an empty
    /// list, mapping or unit, as in marked-yaml).
    fn take_empty_scalar(&mut self) -> Result<bool, Error> {
        self.check_next()?;
        if let (Event::Scalar(value, ..), _) = self.peek()? {
            if value.is_empty() {
                self.take()?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    // ---- paths and placing errors --------------------------------------

    pub fn path_string(&self) -> String {
        let mut out = self.base.clone();
        for segment in &self.path {
            match segment {
                Segment::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                Segment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    fn placed(&self, kind: ErrorKind, at: Marker) -> Error {
        Error::at(kind, at, self.path_string())
    }

    /// `error` placed at `at` on the current path, unless a node deeper
    /// down placed it already.
    fn place(&self, mut error: Error, at: Marker) -> Error {
        if !error.is_placed() {
            error.place(at, self.path_string());
        }
        error
    }

    /// Reads an event already taken as any value: scalars are strings.
    fn visit_taken<V: Visitor<'de>>(
        &mut self,
        event: Event<'de>,
        at: Marker,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let result = match event {
            Event::Scalar(Cow::Borrowed(s), ..) => visitor.visit_borrowed_str(s),
            Event::Scalar(Cow::Owned(s), ..) => visitor.visit_string(s),
            Event::SequenceStart(..) => {
                let depth = self.depth;
                let value = visitor.visit_seq(Seq {
                    events: &mut *self,
                    index: 0,
                });
                self.finish(value, depth, "list")
            }
            Event::MappingStart(..) => {
                let (depth, path_len) = (self.depth, self.path.len());
                let value = visitor.visit_map(Map {
                    events: &mut *self,
                    seen: KeySet::default(),
                });
                // A key whose value was never read is still on the path:
                // the visitor failed on the key itself.
                let value = match value {
                    Err(e) if self.path.len() > path_len => Err(self.place(e, self.last_key)),
                    other => other,
                };
                self.path.truncate(path_len);
                self.finish(value, depth, "mapping")
            }
            _ => Err(de::Error::custom("unexpected YAML event")),
        };
        result.map_err(|e| self.place(e, at))
    }

    /// A list or mapping visitor must have read to the end of its node.
    fn finish<T>(&mut self, value: Result<T, Error>, depth: usize, what: &str) -> Result<T, Error> {
        let value = value?;
        if self.depth >= depth {
            return Err(de::Error::custom(format!(
                "more {what} entries than expected"
            )));
        }
        Ok(value)
    }

    /// The next event if it is a scalar.
    fn take_scalar(&mut self) -> Result<Option<(Cow<'de, str>, Marker)>, Error> {
        self.check_next()?;
        if let (Event::Scalar(..), _) = self.peek()? {
            if let (Event::Scalar(value, ..), at) = self.take()? {
                return Ok(Some((value, at)));
            }
        }
        Ok(None)
    }

    fn parse_number<V, N, E>(
        &mut self,
        visitor: V,
        wrap: fn(E) -> ErrorKind,
        visit: fn(V, N) -> Result<V::Value, Error>,
    ) -> Result<V::Value, Error>
    where
        V: Visitor<'de>,
        N: std::str::FromStr<Err = E>,
    {
        match self.take_scalar()? {
            Some((value, at)) => match value.parse::<N>() {
                Ok(n) => visit(visitor, n).map_err(|e| self.place(e, at)),
                Err(e) => Err(self.placed(wrap(e), at)),
            },
            None => {
                let (event, at) = self.take_node()?;
                self.visit_taken(event, at, visitor)
            }
        }
    }

    /// Keeps the entry's `name` (see `entry_name`) when the value about to
    /// be read is that of the entry mapping's own `name` key.
    fn note_entry_name(&mut self, key_depth: usize, is_name: bool) {
        if !is_name || self.entry_depth.map(|d| d + 1) != Some(key_depth) {
            return;
        }
        if let Some((Event::Scalar(value, ..), _)) = &self.peeked {
            self.entry_name = Some(value.clone());
        }
    }
}

/// An entry that failed: the error, and the entry's `name` if it had a
/// scalar one.
#[derive(Debug)]
pub struct EntryError<'de> {
    pub error: Error,
    pub name: Option<Cow<'de, str>>,
}

macro_rules! numbers {
    ($($method:ident $visit:ident $ty:ty, $kind:ident;)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.parse_number::<V, $ty, _>(visitor, ErrorKind::$kind, |v, n| v.$visit(n))
        })*
    };
}

impl<'de> Deserializer<'de> for &mut Events<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (event, at) = self.take_node()?;
        self.visit_taken(event, at, visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (event, at) = self.take_node()?;
        let Event::Scalar(value, ..) = &event else {
            return self.visit_taken(event, at, visitor);
        };
        let b = match &**value {
            "true" | "True" | "TRUE" => true,
            "false" | "False" | "FALSE" => false,
            _ => return Err(self.placed(ErrorKind::NotBoolean, at)),
        };
        visitor.visit_bool(b).map_err(|e| self.place(e, at))
    }

    numbers! {
        deserialize_i8 visit_i8 i8, Integer;
        deserialize_i16 visit_i16 i16, Integer;
        deserialize_i32 visit_i32 i32, Integer;
        deserialize_i64 visit_i64 i64, Integer;
        deserialize_u8 visit_u8 u8, Integer;
        deserialize_u16 visit_u16 u16, Integer;
        deserialize_u32 visit_u32 u32, Integer;
        deserialize_u64 visit_u64 u64, Integer;
        deserialize_f32 visit_f32 f32, Float;
        deserialize_f64 visit_f64 f64, Float;
    }

    /// A present value is always `Some`, as with marked-yaml: `key:` gives
    /// `Some("")` and the checkers report an empty value where it matters.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.take_empty_scalar()? {
            return visitor.visit_unit();
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let at = self.peek()?.1;
        if self.take_empty_scalar()? {
            let empty = de::value::SeqDeserializer::<_, Error>::new(std::iter::empty::<()>());
            return visitor.visit_seq(empty).map_err(|e| self.place(e, at));
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let at = self.peek()?.1;
        if self.take_empty_scalar()? {
            let empty = de::value::MapDeserializer::<_, Error>::new(std::iter::empty::<((), ())>());
            return visitor.visit_map(empty).map_err(|e| self.place(e, at));
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == SPANNED_MARKER {
            self.check_next()?;
            let at = self.peek()?.1;
            return visitor.visit_seq(SpannedSeq {
                inner: &mut *self,
                at,
                step: 0,
            });
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let (event, at) = self.take_node()?;
        match event {
            Event::Scalar(value, ..) => {
                let variant: StrDeserializer<'_, Error> = value.as_ref().into_deserializer();
                visitor.visit_enum(variant).map_err(|e| self.place(e, at))
            }
            _ => self.visit_taken(event, at, visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let depth = self.depth;
        loop {
            self.take_node()?;
            if self.depth == depth {
                return visitor.visit_unit();
            }
        }
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit_struct tuple
        tuple_struct identifier
    }
}

/// A `Spanned` being read: its position, then its value.
struct SpannedSeq<'a, 'de> {
    inner: &'a mut Events<'de>,
    at: Marker,
    step: u8,
}

impl<'de> SeqAccess<'de> for SpannedSeq<'_, 'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.step += 1;
        match self.step {
            1 => seed
                .deserialize(packed(self.at).into_deserializer())
                .map(Some),
            2 => seed.deserialize(&mut *self.inner).map(Some),
            _ => Ok(None),
        }
    }
}

struct Seq<'a, 'de> {
    events: &'a mut Events<'de>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Seq<'_, 'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if !self.events.next_item()? {
            return Ok(None);
        }
        self.events.path.push(Segment::Index(self.index));
        self.index += 1;
        let value = seed.deserialize(&mut *self.events);
        self.events.path.pop();
        value.map(Some)
    }
}

struct Map<'a, 'de> {
    events: &'a mut Events<'de>,
    seen: KeySet<'de>,
}

impl<'de> MapAccess<'de> for Map<'_, 'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, at)) = self.events.next_key(&mut self.seen)? else {
            return Ok(None);
        };
        let is_name = key == "name";
        self.events.path.push(Segment::Key(key.clone()));
        let value = seed
            .deserialize(Key { key, at })
            .map_err(|e| self.events.place(e, at))?;
        let depth = self.events.depth;
        self.events.fill()?;
        self.events.note_entry_name(depth, is_name);
        Ok(Some(value))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = seed.deserialize(&mut *self.events);
        self.events.path.pop();
        value
    }
}

/// A mapping key: a string, or a `Spanned<String>` for maps whose keys a
/// diagnostic must point at (`SpannedMap`).
struct Key<'de> {
    key: Cow<'de, str>,
    at: Marker,
}

impl<'de> Deserializer<'de> for Key<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.key {
            Cow::Borrowed(s) => BorrowedStrDeserializer::new(s).deserialize_any(visitor),
            Cow::Owned(s) => visitor.visit_string(s),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == SPANNED_MARKER {
            return visitor.visit_seq(KeySpanned {
                key: Some(self),
                step: 0,
            });
        }
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct KeySpanned<'de> {
    key: Option<Key<'de>>,
    step: u8,
}

impl<'de> SeqAccess<'de> for KeySpanned<'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.step += 1;
        match (self.step, self.key.take()) {
            (1, key) => {
                let at = key.as_ref().map(|k| k.at).unwrap_or_default();
                self.key = key;
                seed.deserialize(packed(at).into_deserializer()).map(Some)
            }
            (2, Some(key)) => seed.deserialize(key).map(Some),
            _ => Ok(None),
        }
    }
}
