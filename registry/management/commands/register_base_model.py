from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.manifests import manifest_from_config, manifest_from_folder
from registry.services import register_base_model


class Command(BaseCommand):
    help = (
        "Register a base model with the shape manifest of its linear modules, read from a model folder "
        "(config.json + safetensors or its index) or from a transformers config, without loading weights."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the base model's name, e.g. meta-llama/Llama-3.1-8B")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--from-folder", type=Path, help="a model folder with config.json and *.safetensors")
        source.add_argument("--from-config", type=Path, help="a transformers config.json (or its folder)")
        parser.add_argument("--description", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["from_folder"]:
                architecture, manifest = manifest_from_folder(options["from_folder"])
            else:
                architecture, manifest = manifest_from_config(options["from_config"])
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        base = register_base_model(
            name=options["name"], architecture=architecture, manifest=manifest, description=options["description"]
        )
        self.stdout.write(f"registered {base.name} ({architecture}) with {len(manifest)} linear modules")
