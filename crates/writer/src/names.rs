//! The names of the Kisi groups doorsync manages, put in the catalogue (`doorsync_catalogue`)
//! from the group listing the writer reads anyway when it learns the account, so that the
//! operator's surfaces say "Front door" where the log says group 12.

use doorsync_catalogue::{CatalogueWriter, KisiGroup};
use doorsync_kisi::Group;
use doorsync_proto::KisiGroupId;

/// Names each of `managed` that `groups` lists, writing only what changed. The names are for
/// people only: a write that fails is logged, and the writer goes on.
pub(crate) async fn name_groups(catalogue: &CatalogueWriter, groups: &[Group], managed: &[KisiGroupId]) {
    for group in groups.iter().filter(|group| managed.contains(&group.id)) {
        let named = KisiGroup { name: group.name.clone(), place_id: group.place_id };
        if let Err(error) = catalogue.group(group.id, &named).await {
            tracing::warn!(%error, "the names of Kisi groups could not be written to the catalogue");
            return;
        }
    }
}
