//! Request counts per key: hourly buckets (kept 90 days) and daily buckets
//! (kept 400 days). Each instance adds its counts with an additive upsert,
//! so several instances add up without coordination. `start` is the
//! bucket's first instant in Unix seconds (UTC).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone)]
enum KeyUsageHourly {
    Table,
}

#[derive(DeriveIden, Clone)]
enum KeyUsageDaily {
    Table,
}

#[derive(DeriveIden)]
enum Col {
    KeyId,
    Start,
    Requests,
    RateLimited,
    Errors,
}

fn usage_table(table: impl IntoIden + Clone + 'static) -> TableCreateStatement {
    Table::create()
        .table(table)
        .if_not_exists()
        .col(ColumnDef::new(Col::KeyId).string().not_null())
        .col(ColumnDef::new(Col::Start).big_integer().not_null())
        .col(ColumnDef::new(Col::Requests).big_integer().not_null())
        .col(ColumnDef::new(Col::RateLimited).big_integer().not_null())
        .col(ColumnDef::new(Col::Errors).big_integer().not_null())
        .primary_key(Index::create().col(Col::KeyId).col(Col::Start))
        .to_owned()
}

/// Pruning deletes by age: an index on `start` keeps it off a full scan.
fn start_index(table: impl IntoIden + Clone + 'static, name: &str) -> IndexCreateStatement {
    Index::create()
        .if_not_exists()
        .name(name)
        .table(table)
        .col(Col::Start)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(usage_table(KeyUsageHourly::Table))
            .await?;
        manager
            .create_index(start_index(
                KeyUsageHourly::Table,
                "idx_key_usage_hourly_start",
            ))
            .await?;
        manager
            .create_table(usage_table(KeyUsageDaily::Table))
            .await?;
        manager
            .create_index(start_index(
                KeyUsageDaily::Table,
                "idx_key_usage_daily_start",
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            KeyUsageHourly::Table.into_iden(),
            KeyUsageDaily::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
