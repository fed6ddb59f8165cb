// TEMPORARY STUB (replaced by the collect branch)
use crate::engine::{EngineError, LogChunk};
use crate::outcome::CapturedOutput;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::path::{Path, PathBuf};
pub struct OutputCapture;
impl OutputCapture {
    pub async fn create(_log: &Path) -> std::io::Result<Self> {
        Ok(OutputCapture)
    }
    pub async fn push(&mut self, _c: LogChunk) -> std::io::Result<()> {
        Ok(())
    }
    pub async fn finish(self) -> std::io::Result<CapturedOutput> {
        Ok(CapturedOutput::default())
    }
}
#[derive(Default)]
pub struct ExtractLimits;
pub struct Extracted {
    pub files: Vec<PathBuf>,
    pub warnings: Vec<String>,
}
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct CollectError;
pub async fn extract_results(
    _s: BoxStream<'static, Result<Bytes, EngineError>>,
    _d: &Path,
    _l: ExtractLimits,
) -> Result<Extracted, CollectError> {
    Ok(Extracted {
        files: vec![],
        warnings: vec![],
    })
}
