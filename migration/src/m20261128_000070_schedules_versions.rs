//! Schedules (publish or unpublish a record at a set time, run once by
//! whichever instance claims them first) and record versions (every
//! published version, the latest draft versions).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    ProjectId,
    RecordId,
    Action,
    At,
    ExpectedVersion,
    Status,
    Error,
    CreatedAt,
    DoneAt,
}

#[derive(DeriveIden)]
enum RecordVersions {
    Table,
    RecordId,
    Version,
    ProjectId,
    Published,
    Data,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Records {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Schedules::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Schedules::ProjectId).string().not_null())
                    // No foreign key: a schedule outlives its record, and
                    // fails with a reason when the record is gone.
                    .col(ColumnDef::new(Schedules::RecordId).string().not_null())
                    .col(ColumnDef::new(Schedules::Action).string().not_null())
                    .col(
                        ColumnDef::new(Schedules::At)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Schedules::ExpectedVersion)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(Schedules::Status).string().not_null())
                    .col(ColumnDef::new(Schedules::Error).text().null())
                    .col(
                        ColumnDef::new(Schedules::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Schedules::DoneAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Schedules::Table, Schedules::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The runner's scan: pending schedules by time.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_schedules_status_at")
                    .table(Schedules::Table)
                    .col(Schedules::Status)
                    .col(Schedules::At)
                    .to_owned(),
            )
            .await?;
        // Listings and the pending count of a project.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_schedules_project_status_at")
                    .table(Schedules::Table)
                    .col(Schedules::ProjectId)
                    .col(Schedules::Status)
                    .col(Schedules::At)
                    .col(Schedules::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecordVersions::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RecordVersions::RecordId).string().not_null())
                    .col(
                        ColumnDef::new(RecordVersions::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecordVersions::ProjectId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecordVersions::Published)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecordVersions::Data)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecordVersions::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(RecordVersions::RecordId)
                            .col(RecordVersions::Version),
                    )
                    // A deleted record takes its versions with it.
                    .foreign_key(
                        ForeignKey::create()
                            .from(RecordVersions::Table, RecordVersions::RecordId)
                            .to(Records::Table, Records::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Listing one kind (published or draft) newest first, and pruning
        // the old draft versions.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_record_versions_kind")
                    .table(RecordVersions::Table)
                    .col(RecordVersions::RecordId)
                    .col(RecordVersions::Published)
                    .col(RecordVersions::Version)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RecordVersions::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Schedules::Table).if_exists().to_owned())
            .await
    }
}
