//! Backup and restore through the pipeline: [`crate::backup`] with this
//! pipeline's store, embedder and session store, and the namespace's data
//! version bumped after an import so no cached answer outlives the data it
//! came from.

use std::io::{Read, Seek, Write};

use super::Rag;
use crate::backup::{
    EmbedderInfo, ExportOptions, ExportReport, ImportMode, ImportOptions, ImportReport,
    export_namespace, import_namespace,
};
use crate::error::{Error, Result};
use crate::traits::SessionStore;
use crate::types::Namespace;

impl Rag {
    /// The embedder's model id and dimensions, as a backup file records them.
    pub fn embedder_info(&self) -> EmbedderInfo {
        EmbedderInfo::of(self.embedder().as_ref())
    }

    fn backup_sessions(&self, wanted: bool) -> Result<Option<&dyn SessionStore>> {
        match (wanted, self.sessions()) {
            (false, _) => Ok(None),
            (true, Some(s)) => Ok(Some(s.as_ref())),
            (true, None) => Err(Error::invalid_input(
                "sessions were asked for, and this pipeline has no session store",
            )),
        }
    }

    /// Exports `namespace` of the pipeline's store, and its sessions when
    /// `with_sessions`, to `writer` ([`crate::backup::export_namespace`]).
    ///
    /// # Errors
    /// `InvalidInput` when sessions are asked for and there is no session
    /// store; otherwise those of [`crate::backup::export_namespace`].
    pub async fn export_namespace<W: Write + Send>(
        &self,
        namespace: &Namespace,
        writer: W,
        with_sessions: bool,
    ) -> Result<ExportReport> {
        let mut options = ExportOptions::default();
        if let Some(s) = self.backup_sessions(with_sessions)? {
            options = options.with_sessions(s);
        }
        export_namespace(
            self.store().as_ref(),
            namespace,
            &self.embedder_info(),
            writer,
            &options,
        )
        .await
    }

    /// Imports a backup file into `namespace` of the pipeline's store, and
    /// its sessions into the session store when `with_sessions`
    /// ([`crate::backup::import_namespace`]: the whole file and its embedder
    /// are verified before anything is written). The namespace's data
    /// version is bumped afterwards, also when the import stopped part-way,
    /// so the answer cache serves nothing computed from the old data.
    ///
    /// # Errors
    /// `InvalidInput` when sessions are asked for and there is no session
    /// store; otherwise those of [`crate::backup::import_namespace`].
    pub async fn import_namespace<R: Read + Seek + Send>(
        &self,
        namespace: &Namespace,
        reader: R,
        mode: ImportMode,
        with_sessions: bool,
    ) -> Result<ImportReport> {
        let mut options = ImportOptions::default().with_mode(mode);
        if let Some(s) = self.backup_sessions(with_sessions)? {
            options = options.with_sessions(s);
        }
        let result = import_namespace(
            self.store().as_ref(),
            namespace,
            &self.embedder_info(),
            reader,
            &options,
        )
        .await;
        self.inner.versions.bump(namespace);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use crate::backup::ImportMode;
    use crate::memory::MemorySessionStore;
    use crate::{Ask, Document, Namespace, Rag};

    #[tokio::test]
    async fn a_namespace_moves_between_pipelines_with_its_sessions() {
        let source = Rag::builder()
            .sessions(MemorySessionStore::default())
            .build()
            .unwrap();
        let ns = Namespace::default();
        source
            .ingest(Document::new(
                "keys.md",
                "API keys are rotated every 90 days by the platform team.",
            ))
            .await
            .unwrap();
        let session = source
            .create_session(crate::session::NewSession::new(ns.clone()))
            .await
            .unwrap();
        source
            .ask(Ask::new("How often are keys rotated?").session(session.id))
            .await
            .unwrap();
        let mut file = Vec::new();
        let exported = source.export_namespace(&ns, &mut file, true).await.unwrap();
        assert_eq!((exported.documents, exported.sessions), (1, 1));

        // A pipeline without a session store refuses sessions, writing nothing.
        let bare = Rag::builder().build().unwrap();
        let e = bare
            .import_namespace(&ns, Cursor::new(&file), ImportMode::IntoEmpty, true)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no session store"), "{e}");
        assert_eq!(bare.store().count(&ns).await.unwrap(), 0);

        let target = Rag::builder()
            .sessions(MemorySessionStore::default())
            .build()
            .unwrap();
        let before = target.data_version(&ns);
        let r = target
            .import_namespace(&ns, Cursor::new(&file), ImportMode::IntoEmpty, true)
            .await
            .unwrap();
        assert_eq!((r.documents_written, r.sessions_written), (1, 1));
        assert!(
            target.data_version(&ns) > before,
            "the import bumps the data version"
        );
        let a = target
            .ask(Ask::new("How often are keys rotated?"))
            .await
            .unwrap();
        assert_eq!(a.citations[0].source, "keys.md");
        let sessions = target.sessions().unwrap().list(&ns, 10).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].message_count, 2);
    }
}
