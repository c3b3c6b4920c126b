//! `voxpool keys`: create, list and revoke API keys in the server's database.

use std::io::Write;

use crate::api::auth::sha256;
use crate::config::{KeysAction, KeysArgs};
use crate::store::hex;
use crate::store::Store;

/// Exit code 2: bad arguments or settings; 1: the database failed or the key is unknown.
pub async fn run(args: &KeysArgs, mut out: impl Write) -> Result<(), (u8, String)> {
    let url = args.database_url().map_err(|e| (2, e.to_string()))?;
    let store = Store::connect(&url)
        .await
        .map_err(|e| (1, format!("cannot open database: {e}")))?;
    let failed = |e: crate::store::StoreError| (1, e.to_string());
    let result = match &args.action {
        KeysAction::Create { name, admin } => {
            // 32 random bytes from two v4 UUIDs (the OS generator), as hex.
            let secret = format!(
                "sk-vp-{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            let id = store
                .create_api_key(name, &hex(&sha256(&secret)), *admin)
                .await
                .map_err(failed)?;
            let scope = if *admin { "admin" } else { "user" };
            let _ = writeln!(out, "{secret}");
            let _ = writeln!(
                std::io::stderr(),
                "created {scope} key {id} ({name}); it is shown only now"
            );
            Ok(())
        }
        KeysAction::List => {
            let _ = writeln!(
                out,
                "{:<38} {:<6} {:<20} {:<25} revoked",
                "id", "scope", "name", "created"
            );
            for k in store.api_keys().await.map_err(failed)? {
                let _ = writeln!(
                    out,
                    "{:<38} {:<6} {:<20} {:<25} {}",
                    k.id,
                    if k.admin { "admin" } else { "user" },
                    k.name,
                    k.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    k.revoked_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
        KeysAction::Revoke { id } => match store.revoke_api_key(id).await.map_err(failed)? {
            true => {
                let _ = writeln!(out, "revoked {id}");
                Ok(())
            }
            false => Err((1, format!("no active key with id {id}"))),
        },
    };
    let _ = store.close().await;
    result
}
