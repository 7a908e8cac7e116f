//! `doorsync mapping suggest`: reads both accounts and prints `[[mapping]]` entries matched by
//! name (the matching is `doorsync_node::suggest`'s), for the operator to check and paste.

use clap::Subcommand;
use doorsync_node::{Context, inventory, setup, suggest};

#[derive(Debug, Subcommand)]
pub(crate) enum MappingAction {
    /// Prints a [[mapping]] entry for each Nexudus resource, pass product and desk or office
    /// whose name matches one Kisi group's (ignoring case, then punctuation and spacing), and, as
    /// comments, what found no match on either side. Reads Nexudus and Kisi; writes nothing.
    Suggest,
}

pub(crate) async fn run(context: &Context, action: MappingAction) -> anyhow::Result<()> {
    match action {
        MappingAction::Suggest => {
            let config = &context.config;
            let nexudus = inventory::nexudus_client(config, context.clock.clone())?;
            let kisi = setup::kisi_client(config)?;
            let sources = inventory::read_nexudus(&nexudus).await?;
            let groups = inventory::read_kisi_groups(&kisi).await?;
            print!("{}", suggest::suggest(&sources, &groups).to_toml());
            Ok(())
        }
    }
}
