"""Rationale bootstrapping (Memphis-CoT, DESIGN §3.7): generate -> verify -> pair -> rank-finetune."""
