//! Content: models, records (latest draft plus published snapshot) and the
//! side table that makes unique field values a database constraint.
//!
//! Every statement is idempotent (`IF NOT EXISTS`), like the first migration.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Models {
    Table,
    Id,
    ProjectId,
    Key,
    Name,
    Fields,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Records {
    Table,
    Id,
    ProjectId,
    ModelId,
    DraftData,
    PublishedData,
    Status,
    Version,
    CreatedAt,
    UpdatedAt,
    PublishedAt,
}

#[derive(DeriveIden)]
enum RecordUniqueValues {
    Table,
    ModelId,
    Field,
    ValueText,
    RecordId,
}

fn timestamp(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Models::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Models::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Models::ProjectId).string().not_null())
                    .col(ColumnDef::new(Models::Key).string().not_null())
                    .col(ColumnDef::new(Models::Name).string().not_null())
                    .col(ColumnDef::new(Models::Fields).json_binary().not_null())
                    .col(timestamp(Models::CreatedAt))
                    .col(timestamp(Models::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_models_project")
                            .from(Models::Table, Models::ProjectId)
                            .to(Projects::Table, Projects::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .unique()
                    .name("idx_models_project_key")
                    .table(Models::Table)
                    .col(Models::ProjectId)
                    .col(Models::Key)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Records::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Records::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Records::ProjectId).string().not_null())
                    .col(ColumnDef::new(Records::ModelId).string().not_null())
                    .col(ColumnDef::new(Records::DraftData).json_binary().not_null())
                    .col(ColumnDef::new(Records::PublishedData).json_binary().null())
                    .col(ColumnDef::new(Records::Status).string().not_null())
                    .col(ColumnDef::new(Records::Version).big_integer().not_null())
                    .col(timestamp(Records::CreatedAt))
                    .col(timestamp(Records::UpdatedAt))
                    .col(
                        ColumnDef::new(Records::PublishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_records_project")
                            .from(Records::Table, Records::ProjectId)
                            .to(Projects::Table, Projects::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_records_model")
                            .from(Records::Table, Records::ModelId)
                            .to(Models::Table, Models::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One index per system ordering: keyset pages seek straight to the
        // cursor, whatever the page number.
        for (name, col) in [
            ("idx_records_model_created", Records::CreatedAt),
            ("idx_records_model_updated", Records::UpdatedAt),
            ("idx_records_model_published", Records::PublishedAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(name)
                        .table(Records::Table)
                        .col(Records::ModelId)
                        .col(col)
                        .col(Records::Id)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(RecordUniqueValues::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RecordUniqueValues::ModelId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecordUniqueValues::Field)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecordUniqueValues::ValueText)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecordUniqueValues::RecordId)
                            .string()
                            .not_null(),
                    )
                    // The primary key is the uniqueness rule and the index
                    // that equality filters on unique fields probe.
                    .primary_key(
                        Index::create()
                            .col(RecordUniqueValues::ModelId)
                            .col(RecordUniqueValues::Field)
                            .col(RecordUniqueValues::ValueText),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_record_unique_values_record")
                            .from(RecordUniqueValues::Table, RecordUniqueValues::RecordId)
                            .to(Records::Table, Records::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_record_unique_values_record")
                    .table(RecordUniqueValues::Table)
                    .col(RecordUniqueValues::RecordId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["record_unique_values", "records", "models"] {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
