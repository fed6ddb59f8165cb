// TEMPORARY STUB (replaced by the base branch)
use super::EngineError;
use std::path::Path;
pub async fn build_image(
    _docker: &bollard::Docker,
    _context: &Path,
    tag: &str,
    log: &Path,
) -> Result<(), EngineError> {
    Err(EngineError::Build {
        image: tag.into(),
        message: "stub".into(),
        log: log.into(),
    })
}
