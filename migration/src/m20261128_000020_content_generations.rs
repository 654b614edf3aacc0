//! Each project's content generation, kept in the database next to the
//! content (bumped in the same transaction as a change to the published
//! view) so that read caches can follow changes whose Redis announcement
//! failed. Rows are never deleted.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ContentGenerations {
    Table,
    ProjectId,
    Generation,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ContentGenerations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ContentGenerations::ProjectId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ContentGenerations::Generation)
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
                    .table(ContentGenerations::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
