//! Apply rules and local reads for backups. Rows of the `sm` table:
//! `backup/<name>`.

use super::{StateStore, StoreError, StrTable, db_err, get_value, put_value, scan_values};
use crate::backups::{BackupRecord, RunOutcome, valid_backup_name};
use crate::records::{Command, CommandError};

const BACKUP_PREFIX: &str = "backup/";

type Applied = Result<Result<(), CommandError>, StoreError>;

fn backup_key(name: &str) -> String {
    format!("{BACKUP_PREFIX}{name}")
}

/// Applies one backup command. Callers route only these here.
pub(super) fn apply(sm: &mut StrTable<'_>, command: Command) -> Applied {
    match command {
        Command::CreateBackup(record) => {
            if !valid_backup_name(&record.name) {
                return Ok(Err(CommandError::InvalidRecord(format!(
                    "backup name `{}`: use 1-63 characters of a-z, 0-9 and `-`, starting with a letter",
                    record.name
                ))));
            }
            let row = backup_key(&record.name);
            if get_value::<BackupRecord>(sm, &row)?.is_some() {
                return Ok(Err(CommandError::BackupExists(record.name)));
            }
            if record.last_run.is_some() || record.last_success_ms.is_some() {
                return Ok(Err(CommandError::InvalidRecord(
                    "a new backup has no runs yet".into(),
                )));
            }
            put_value(sm, &row, &record)?;
        }
        Command::DeleteBackup { name } => {
            let row = backup_key(&name);
            if get_value::<BackupRecord>(sm, &row)?.is_none() {
                return Ok(Err(CommandError::BackupUnknown(name)));
            }
            sm.remove(row.as_str())
                .map_err(db_err("removing a backup"))?;
        }
        Command::RecordBackupRun { name, run } => {
            let row = backup_key(&name);
            let Some(mut record) = get_value::<BackupRecord>(sm, &row)? else {
                return Ok(Err(CommandError::BackupUnknown(name)));
            };
            // Runs may report out of order (a slow run after a quick one):
            // the record keeps the one that finished last.
            if record
                .last_run
                .as_ref()
                .is_some_and(|last| last.finished_ms > run.finished_ms)
            {
                return Ok(Ok(()));
            }
            if matches!(run.outcome, RunOutcome::Saved { .. }) {
                record.last_success_ms = Some(run.finished_ms);
            }
            record.last_run = Some(run);
            put_value(sm, &row, &record)?;
        }
        other => {
            return Err(StoreError::Inconsistent(format!(
                "backup apply got a foreign command: {other:?}"
            )));
        }
    }
    Ok(Ok(()))
}

impl StateStore {
    /// One backup.
    pub fn backup(&self, name: &str) -> Result<Option<BackupRecord>, StoreError> {
        self.read_sm(|sm| get_value(sm, &backup_key(name)))
    }

    /// Every backup, sorted by name.
    pub fn backups(&self) -> Result<Vec<BackupRecord>, StoreError> {
        self.read_sm(|sm| scan_values(sm, BACKUP_PREFIX))
    }
}

#[cfg(test)]
mod tests {
    use coop_types::PeerId;

    use super::super::tests::Harness;
    use crate::backups::{
        BackupRecord, BackupRun, BackupSource, BackupTarget, KeepPolicy, RunOutcome,
    };
    use crate::records::{Command, CommandError};

    fn record(name: &str) -> BackupRecord {
        BackupRecord {
            name: name.into(),
            source: BackupSource::Bucket {
                bucket: "photos".into(),
            },
            target: BackupTarget::S3 {
                url: "s3://friend:7401/vault".into(),
                access_key: "CK".into(),
                secret_sealed: vec![1, 2, 3],
            },
            password_sealed: vec![4, 5, 6],
            every_secs: Some(3600),
            keep: KeepPolicy::default(),
            created_at: 1,
            last_run: None,
            last_success_ms: None,
        }
    }

    fn run(finished_ms: u64, ok: bool) -> Command {
        Command::RecordBackupRun {
            name: "nightly".into(),
            run: BackupRun {
                peer: PeerId([1; 32]),
                started_ms: finished_ms - 10,
                finished_ms,
                outcome: if ok {
                    RunOutcome::Saved {
                        snapshot: format!("snap-{finished_ms}"),
                        files: 3,
                        files_read: 1,
                        bytes: 30,
                        bytes_added: 10,
                        forgotten: 0,
                    }
                } else {
                    RunOutcome::Failed {
                        error: "target unreachable".into(),
                    }
                },
            },
        }
    }

    #[tokio::test]
    async fn backups_are_created_once_record_their_latest_run_and_go() {
        let mut h = Harness::new("backups");
        h.run(Command::CreateBackup(record("nightly")))
            .await
            .unwrap();
        assert_eq!(
            h.run(Command::CreateBackup(record("nightly"))).await,
            Err(CommandError::BackupExists("nightly".into()))
        );
        assert!(matches!(
            h.run(Command::CreateBackup(record("Bad/Name"))).await,
            Err(CommandError::InvalidRecord(_))
        ));
        let mut ran = record("ran");
        ran.last_success_ms = Some(5);
        assert!(matches!(
            h.run(Command::CreateBackup(ran)).await,
            Err(CommandError::InvalidRecord(_))
        ));

        h.run(run(1000, true)).await.unwrap();
        h.run(run(2000, false)).await.unwrap();
        // A slow run that finished before the last one recorded is ignored.
        h.run(run(1500, true)).await.unwrap();
        let stored = h.store.backup("nightly").unwrap().unwrap();
        assert_eq!(stored.last_run.as_ref().map(|r| r.finished_ms), Some(2000));
        assert_eq!(
            stored.last_success_ms,
            Some(1000),
            "a failure keeps the last success"
        );
        assert_eq!(stored.password_sealed, vec![4, 5, 6]);

        assert_eq!(
            h.run(Command::DeleteBackup {
                name: "other".into()
            })
            .await,
            Err(CommandError::BackupUnknown("other".into()))
        );
        h.run(Command::DeleteBackup {
            name: "nightly".into(),
        })
        .await
        .unwrap();
        assert!(h.store.backups().unwrap().is_empty());
        assert_eq!(
            h.run(run(3000, true)).await,
            Err(CommandError::BackupUnknown("nightly".into()))
        );
    }
}
