//! Built without the feature `deflate`: the codecs cannot exist. A [`Connection`]
//! (crate::Connection) ignores [`Config::deflate`](crate::Config::deflate), a server never
//! agrees to the extension and a client never offers it, so no codec is ever asked for;
//! these uninhabited stand-ins keep the connection's code free of feature gates.

use std::convert::Infallible;

/// Never built: see the module docs.
pub(crate) struct Deflater(Infallible);

impl Deflater {
    pub(crate) fn compress(&mut self, _data: &[u8]) -> &[u8] {
        match self.0 {}
    }

    pub(crate) fn shrink(&mut self) {
        match self.0 {}
    }

    #[cfg(feature = "snapshot")]
    pub(crate) fn restore(_level: u32, _bits: u8, _reset: bool, _w: &[u8]) -> Result<Self, ()> {
        Err(())
    }

    #[cfg(feature = "snapshot")]
    pub(crate) fn window(&self) -> Vec<u8> {
        match self.0 {}
    }
}

/// Why inflating failed (never, here: the decoder still matches on it).
#[derive(Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub(crate) enum InflateError {
    /// The inflated message passed the limit.
    TooBig { size: u64 },
    /// Not valid DEFLATE data.
    Corrupt,
}

/// Never built: see the module docs.
pub(crate) struct Inflater(Infallible);

impl Inflater {
    pub(crate) fn inflate(
        &mut self,
        _input: &[u8],
        _out: &mut Vec<u8>,
        _max: u64,
    ) -> Result<(), InflateError> {
        match self.0 {}
    }

    pub(crate) fn finish(&mut self, _out: &mut Vec<u8>, _max: u64) -> Result<(), InflateError> {
        match self.0 {}
    }

    pub(crate) fn shrink(&mut self) {
        match self.0 {}
    }

    #[cfg(feature = "snapshot")]
    pub(crate) fn restore(_bits: u8, _reset: bool, _window: &[u8]) -> Result<Self, ()> {
        Err(())
    }

    #[cfg(feature = "snapshot")]
    pub(crate) fn window(&self) -> Vec<u8> {
        match self.0 {}
    }
}
