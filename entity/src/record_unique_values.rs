//! One value of a unique field held by a record (in its draft, its published
//! snapshot, or both); the primary key makes duplicates impossible.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "record_unique_values")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub field: String,
    /// The value in canonical text form.
    #[sea_orm(primary_key, auto_increment = false)]
    pub value_text: String,
    pub record_id: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
