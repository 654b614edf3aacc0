//! Where a single instance keeps its rate-limit windows across a restart.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RateLimitWindows {
    Table,
    KeyId,
    Buckets,
    SavedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RateLimitWindows::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RateLimitWindows::KeyId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    // JSON array of [unix minute, count] pairs.
                    .col(ColumnDef::new(RateLimitWindows::Buckets).text().not_null())
                    // Unix seconds.
                    .col(
                        ColumnDef::new(RateLimitWindows::SavedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RateLimitWindows::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
