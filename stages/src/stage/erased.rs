//! [`WireStage`]: any [`Stage`] seen through the job's wire strings.

use super::wire::{decode, encode};
use super::{Stage, StageContext, StageError};

/// A stage whose input and output are the job's wire strings. Every [`Stage`] is one; the
/// engine holds stages as `Box<dyn WireStage>` whatever their types.
pub trait WireStage: Send {
    /// See [`Stage::open`].
    ///
    /// # Errors
    /// As [`Stage::open`].
    fn open(&mut self, ctx: &StageContext) -> Result<(), StageError>;

    /// Decodes `input`, runs [`Stage::process`], encodes the output.
    ///
    /// # Errors
    /// [`StageError::InvalidInput`] when `input` does not decode; otherwise as
    /// [`Stage::process`].
    fn process_wire(&mut self, input: &str, ctx: &StageContext) -> Result<String, StageError>;

    /// See [`Stage::close`].
    fn close(&mut self, ctx: &StageContext);
}

impl<S: Stage> WireStage for S {
    fn open(&mut self, ctx: &StageContext) -> Result<(), StageError> {
        Stage::open(self, ctx)
    }

    fn process_wire(&mut self, input: &str, ctx: &StageContext) -> Result<String, StageError> {
        let output = self.process(decode(input)?, ctx)?;
        encode(&output)
    }

    fn close(&mut self, ctx: &StageContext) {
        Stage::close(self, ctx);
    }
}
