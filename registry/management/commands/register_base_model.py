from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.base_models import register_from_folder
from registry.exceptions import RegistryError
from registry.manifests import manifest_from_config
from registry.models import Visibility
from registry.services import register_base_model


class Command(BaseCommand):
    help = (
        "Register a base model: from a model folder (config.json, tokenizer files and safetensors weights), "
        "whose files the hub stores and serves over the Hugging Face protocol and workers fetch; or only its "
        "shape manifest (--manifest-only, or --from-config), read without loading weights."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the base model's name, e.g. meta-llama/Llama-3.1-8B")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--from-folder", type=Path, help="a model folder with config.json and *.safetensors")
        source.add_argument(
            "--from-config", type=Path, help="a transformers config.json (or its folder); manifest only"
        )
        parser.add_argument(
            "--manifest-only", action="store_true", help="keep only the manifest: the base's files are not stored"
        )
        parser.add_argument("--description", default="")
        parser.add_argument("--visibility", choices=Visibility.values, default=Visibility.PUBLIC)
        parser.add_argument("--namespace", help="the namespace that owns it (private ones are visible to its members)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["visibility"] == Visibility.PRIVATE and not options["namespace"]:
            raise CommandError("a private base model needs --namespace: its members are the ones who see it")
        try:
            if options["from_folder"]:
                base = register_from_folder(
                    name=options["name"],
                    folder=options["from_folder"],
                    description=options["description"],
                    visibility=options["visibility"],
                    namespace=options["namespace"],
                    manifest_only=options["manifest_only"],
                )
            else:
                architecture, manifest = manifest_from_config(options["from_config"])
                base = register_base_model(
                    name=options["name"],
                    architecture=architecture,
                    manifest=manifest,
                    description=options["description"],
                    visibility=options["visibility"],
                    namespace=options["namespace"],
                )
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except RegistryError as exc:
            raise CommandError(exc.message) from exc
        files = base.files.all()
        stored = f", {len(files)} files stored ({sum(f.size for f in files)} bytes)" if files else ", no files stored"
        self.stdout.write(
            f"registered {base.name} ({base.architecture}) with {len(base.manifest)} linear modules{stored}"
        )
