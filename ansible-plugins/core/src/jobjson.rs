//! The `job-output.json` writer: a JSON array with one object per playbook run, each written as
//! Python's `json.dumps(obj, indent=4, sort_keys=True)`. The first write creates `[\n<obj>\n]\n`;
//! each later one seeks 3 bytes back (over `\n]\n`) and writes `,\n<obj>\n]\n`.

use crate::errors::CallbackError;
use crate::pyjson::dumps_indent;
use serde_json::Value;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Appends playbook objects to a job-output.json file.
#[derive(Debug, Clone)]
pub struct JobJson {
    path: PathBuf,
}

impl JobJson {
    /// A writer for `path` (created on first append).
    pub fn new(path: impl AsRef<Path>) -> Self {
        JobJson {
            path: path.as_ref().to_path_buf(),
        }
    }

    /// Appends one playbook object given as a JSON document.
    pub fn append_str(&self, obj_json: &str) -> Result<(), CallbackError> {
        let value: Value = serde_json::from_str(obj_json)?;
        self.append(value)
    }

    /// Appends one playbook object.
    /// Strings holding a secret value are replaced by [`crate::redact::NOTICE`].
    pub fn append(&self, mut obj: Value) -> Result<(), CallbackError> {
        if crate::redact::value(&mut obj) {
            println!("{}", crate::redact::CONTROL);
        }
        let body = dumps_indent(&obj, 4);
        let err = |e| CallbackError::file(&self.path, e);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(err)?;
        let len = f.metadata().map_err(err)?.len();
        let opening = if len >= 3 {
            f.seek(SeekFrom::End(-3)).map_err(err)?;
            ",\n"
        } else {
            f.set_len(0).map_err(err)?;
            f.seek(SeekFrom::Start(0)).map_err(err)?;
            "[\n"
        };
        for part in [opening, body.as_str(), "\n]\n"] {
            f.write_all(part.as_bytes()).map_err(err)?;
        }
        f.flush().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../testdata/zuul-14.3-hello.job-output.json");

    #[test]
    fn rewriting_the_sample_reproduces_it_byte_for_byte() {
        let parsed: Value = serde_json::from_str(SAMPLE).unwrap();
        let Value::Array(objs) = parsed else {
            panic!("sample is not a list")
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job-output.json");
        let w = JobJson::new(&path);
        w.append(objs[0].clone()).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(first.starts_with("[\n{\n    \"branch\": \"main\",\n"));
        assert!(first.ends_with("\n}\n]\n"));
        w.append_str(&serde_json::to_string(&objs[1]).unwrap())
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SAMPLE);
    }
}
