//! Files (SPEC §7): one row per uploaded file (its bytes live in the object
//! store, under the project and the file id), and the server secrets every
//! instance shares (the key that signs preview URLs when
//! `QUIRE_SIGNING_SECRET` is not set).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Files {
    Table,
    Id,
    ProjectId,
    Filename,
    ContentType,
    Size,
    Sha256,
    Width,
    Height,
    Alt,
    CreatedAt,
    UpdatedAt,
    PublishedAt,
}

#[derive(DeriveIden)]
enum ServerSecrets {
    Table,
    Name,
    Value,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Files::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Files::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Files::ProjectId).string().not_null())
                    .col(ColumnDef::new(Files::Filename).string().not_null())
                    .col(ColumnDef::new(Files::ContentType).string().not_null())
                    .col(ColumnDef::new(Files::Size).big_integer().not_null())
                    .col(ColumnDef::new(Files::Sha256).string().not_null())
                    .col(ColumnDef::new(Files::Width).integer())
                    .col(ColumnDef::new(Files::Height).integer())
                    .col(ColumnDef::new(Files::Alt).text())
                    .col(
                        ColumnDef::new(Files::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Files::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Files::PublishedAt).timestamp_with_time_zone())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_files_project_created")
                    .table(Files::Table)
                    .col(Files::ProjectId)
                    .col(Files::CreatedAt)
                    .col(Files::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ServerSecrets::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ServerSecrets::Name)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ServerSecrets::Value).string().not_null())
                    .col(
                        ColumnDef::new(ServerSecrets::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [Files::Table.into_iden(), ServerSecrets::Table.into_iden()] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
