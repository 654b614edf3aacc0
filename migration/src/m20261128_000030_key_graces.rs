//! Old secrets whose rotation grace still runs, beyond the one kept in
//! `api_keys.previous_key_hash`: each rotation moves the previous secret
//! here while its grace lasts, so a second rotation never cuts the first
//! one's grace short.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeyGraces {
    Table,
    KeyHash,
    KeyId,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeyGraces::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ApiKeyGraces::KeyHash)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ApiKeyGraces::KeyId).string().not_null())
                    .col(
                        ColumnDef::new(ApiKeyGraces::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeyGraces::Table, ApiKeyGraces::KeyId)
                            .to(ApiKeys::Table, ApiKeys::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_api_key_graces_key_id")
                    .table(ApiKeyGraces::Table)
                    .col(ApiKeyGraces::KeyId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(ApiKeyGraces::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
