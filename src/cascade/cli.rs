//! `diemcau node ...`: the parent's list of child hubs and their credentials.

use crate::config::NodeCommand;
use crate::store::now_millis;

/// Runs a node command; returns what to print, or why it failed.
pub fn run(command: NodeCommand) -> Result<String, String> {
    match command {
        NodeCommand::Add {
            name,
            province,
            data,
        } => {
            super::check_name(&name).map_err(|e| e.to_string())?;
            for code in &province {
                super::check_province(code).map_err(|e| e.to_string())?;
            }
            let store = data.open_store()?;
            let token = crate::auth::new_token().map_err(|e| e.to_string())?;
            store
                .add_node(
                    &name,
                    &province,
                    &crate::auth::token_hash(&token),
                    now_millis(),
                )
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "node {name} added (provinces: {}). Its credential, shown this once:\n\n    {token}\n\n\
                 Give it to the operator of {name}'s hub, who runs it with --parent and \
                 --node-token-file (a file holding this line) or DIEMCAU_NODE_TOKEN.",
                if province.is_empty() {
                    "none yet".to_owned()
                } else {
                    province.join(", ")
                }
            ))
        }
        NodeCommand::List { data } => {
            let store = data.open_store()?;
            let nodes = store.nodes().map_err(|e| e.to_string())?;
            let mut out = format!("{:<24} {:<20} state", "node", "provinces");
            for node in nodes {
                out.push_str(&format!(
                    "\n{:<24} {:<20} {}",
                    node.name,
                    node.provinces.join(","),
                    if node.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                ));
            }
            Ok(out)
        }
        NodeCommand::Revoke { name, data } => {
            let store = data.open_store()?;
            store
                .revoke_node(&name, now_millis())
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "node {name} revoked: its link is refused from now on (a running hub drops it \
                 within seconds)"
            ))
        }
    }
}
