"""Autonomic control: rules over metrics acting on knobs (dynamic parameters), with guardrails."""
