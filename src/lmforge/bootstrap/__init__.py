"""Rationale bootstrapping (Memphis-CoT; docs/commands/bootstrap.md): generate -> verify -> pair -> rank-finetune."""
