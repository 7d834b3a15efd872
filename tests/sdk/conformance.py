"""Sluice's proxy as the official OpenAI and Anthropic Python SDKs see it.

Run by `tests/tests/t90_sdk_conformance.rs`, which starts a 3-node cluster
and a mock upstream and passes what it set up in the environment:

  SLUICE_PROXY_URLS          proxy base URLs of every node, comma-separated
                             (`http://127.0.0.1:PORT`, no `/v1`)
  SLUICE_API_KEY             a virtual key allowed on every route
  SLUICE_RESTRICTED_KEY      a virtual key allowed on SLUICE_ROUTE_GPT only
  SLUICE_ROUTE_GPT           a route on an OpenAI-kind provider
  SLUICE_ROUTE_CLAUDE        a route on an Anthropic-kind provider
  SLUICE_ROUTE_EMBED         a route on an embedding model
  SLUICE_ROUTE_RATE_LIMITED  a route whose provider always answers 429
  SLUICE_ROUTE_BROKEN        a route whose provider always answers 500
  SLUICE_ROUTE_AZURE         a route on an Azure OpenAI provider (the v1 API,
                             Microsoft Entra ID tokens) at a mock that checks
                             Azure's credentials
  SLUICE_ROUTE_GEMINI        a route on a Gemini provider (translated both ways)
  SLUICE_ROUTE_VERTEX        a route on a Vertex AI provider (Gemini's API, service
                             account tokens from a mock that verifies their JWTs)
  SLUICE_ROUTE_BEDROCK       a route on an AWS Bedrock provider (the Converse API,
                             SigV4-signed) at a mock that verifies every signature

Every case runs through every node. Error cases use `max_retries=0` so the
SDK's own retries do not hide what the proxy answered.

    python tests/sdk/conformance.py          # plain unittest, verbose
"""

import json
import os
import sys
import unittest

# Everything, tracebacks included, on stdout: the Rust test streams one pipe.
sys.stderr = sys.stdout

import anthropic  # noqa: E402
import openai  # noqa: E402

URLS = [u.strip().rstrip("/") for u in os.environ["SLUICE_PROXY_URLS"].split(",") if u.strip()]
KEY = os.environ["SLUICE_API_KEY"]
RESTRICTED_KEY = os.environ["SLUICE_RESTRICTED_KEY"]
GPT = os.environ["SLUICE_ROUTE_GPT"]
CLAUDE = os.environ["SLUICE_ROUTE_CLAUDE"]
EMBED = os.environ["SLUICE_ROUTE_EMBED"]
RATE_LIMITED = os.environ["SLUICE_ROUTE_RATE_LIMITED"]
BROKEN = os.environ["SLUICE_ROUTE_BROKEN"]
AZURE = os.environ["SLUICE_ROUTE_AZURE"]
GEMINI = os.environ["SLUICE_ROUTE_GEMINI"]
VERTEX = os.environ["SLUICE_ROUTE_VERTEX"]
BEDROCK = os.environ["SLUICE_ROUTE_BEDROCK"]
TIMEOUT = 30.0

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": WEATHER_SCHEMA,
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": WEATHER_SCHEMA,
    }
]


def openai_client(url, key=KEY, retries=2):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=retries, timeout=TIMEOUT)


def anthropic_client(url, key=KEY, retries=2):
    # The SDK appends `/v1/messages` itself.
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=retries, timeout=TIMEOUT)


def user(text):
    return [{"role": "user", "content": text}]


class OpenAIChat(unittest.TestCase):
    def test_create(self):
        for url in URLS:
            for route in (GPT, CLAUDE):
                with self.subTest(node=url, route=route):
                    reply = openai_client(url).chat.completions.create(
                        model=route, messages=user("hello from the openai sdk")
                    )
                    self.assertEqual(reply.object, "chat.completion")
                    # The SDK exposes the proxy's `x-request-id`.
                    self.assertTrue((reply._request_id or "").startswith("req_"), reply._request_id)
                    self.assertIn("hello from the openai sdk", reply.choices[0].message.content)
                    self.assertEqual(reply.choices[0].finish_reason, "stop")
                    self.assertGreater(reply.usage.completion_tokens, 0)
                    self.assertEqual(
                        reply.usage.total_tokens,
                        reply.usage.prompt_tokens + reply.usage.completion_tokens,
                    )

    def test_stream(self):
        for url in URLS:
            for route in (GPT, CLAUDE):
                with self.subTest(node=url, route=route):
                    client = openai_client(url)
                    whole = client.chat.completions.create(model=route, messages=user("stream me"))
                    stream = client.chat.completions.create(
                        model=route,
                        messages=user("stream me"),
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                    chunks = list(stream)
                    text = "".join(
                        c.choices[0].delta.content or "" for c in chunks if c.choices
                    )
                    self.assertEqual(text, whole.choices[0].message.content)
                    with_usage = [c for c in chunks if c.usage is not None]
                    self.assertEqual(len(with_usage), 1)
                    self.assertEqual(with_usage[0].choices, [])
                    self.assertEqual(with_usage[0].usage.total_tokens, whole.usage.total_tokens)

    def test_tools(self):
        for url in URLS:
            for route in (GPT, CLAUDE):
                with self.subTest(node=url, route=route):
                    reply = openai_client(url).chat.completions.create(
                        model=route, messages=user("Paris"), tools=OPENAI_TOOLS
                    )
                    choice = reply.choices[0]
                    self.assertEqual(choice.finish_reason, "tool_calls")
                    calls = choice.message.tool_calls
                    self.assertEqual(len(calls), 1)
                    self.assertEqual(calls[0].type, "function")
                    self.assertEqual(calls[0].function.name, "get_weather")
                    self.assertEqual(json.loads(calls[0].function.arguments), {"city": "Paris"})
                    self.assertTrue(calls[0].id)

    def test_tools_streamed(self):
        for url in URLS:
            for route in (GPT, CLAUDE):
                with self.subTest(node=url, route=route):
                    stream = openai_client(url).chat.completions.create(
                        model=route, messages=user("Paris"), tools=OPENAI_TOOLS, stream=True
                    )
                    name, arguments, finish = "", "", None
                    for chunk in stream:
                        for choice in chunk.choices:
                            for call in choice.delta.tool_calls or []:
                                name += call.function.name or ""
                                arguments += call.function.arguments or ""
                            finish = choice.finish_reason or finish
                    self.assertEqual(name, "get_weather")
                    self.assertEqual(json.loads(arguments), {"city": "Paris"})
                    self.assertEqual(finish, "tool_calls")


class OpenAIOtherEndpoints(unittest.TestCase):
    def test_completions(self):
        for url in URLS:
            with self.subTest(node=url):
                reply = openai_client(url).completions.create(
                    model=GPT, prompt="complete this", max_tokens=16
                )
                self.assertEqual(reply.object, "text_completion")
                self.assertTrue(reply.choices[0].text)
                self.assertGreater(reply.usage.total_tokens, 0)

    def test_completions_streamed(self):
        for url in URLS:
            with self.subTest(node=url):
                client = openai_client(url)
                whole = client.completions.create(model=GPT, prompt="complete this")
                text = "".join(
                    c.choices[0].text
                    for c in client.completions.create(model=GPT, prompt="complete this", stream=True)
                    if c.choices
                )
                self.assertEqual(text, whole.choices[0].text)

    def test_embeddings(self):
        # The SDK asks for base64 and decodes it into floats.
        for url in URLS:
            with self.subTest(node=url):
                reply = openai_client(url).embeddings.create(model=EMBED, input=["one", "two"])
                self.assertEqual(len(reply.data), 2)
                for item in reply.data:
                    self.assertGreater(len(item.embedding), 0)
                    self.assertTrue(all(isinstance(x, float) for x in item.embedding))
                self.assertGreater(reply.usage.prompt_tokens, 0)

    def test_models(self):
        for url in URLS:
            with self.subTest(node=url):
                ids = {m.id for m in openai_client(url).models.list()}
                self.assertTrue({GPT, CLAUDE, EMBED} <= ids, ids)
                restricted = [m.id for m in openai_client(url, RESTRICTED_KEY).models.list()]
                self.assertEqual(restricted, [GPT])
                model = openai_client(url).models.retrieve(CLAUDE)
                self.assertEqual(model.id, CLAUDE)
                self.assertEqual(model.object, "model")


RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER_SCHEMA,
    }
]


class OpenAIResponses(unittest.TestCase):
    """The Responses API, passed through to OpenAI-kind providers."""

    def test_create_and_follow_up_through_another_node(self):
        for i, url in enumerate(URLS):
            with self.subTest(node=url):
                client = openai_client(url)
                reply = client.responses.create(model=GPT, input="hello from the responses api")
                self.assertEqual(reply.object, "response")
                self.assertEqual(reply.status, "completed")
                self.assertIn("hello from the responses api", reply.output_text)
                self.assertGreater(reply.usage.input_tokens, 0)
                self.assertEqual(
                    reply.usage.total_tokens, reply.usage.input_tokens + reply.usage.output_tokens
                )
                other = openai_client(URLS[(i + 1) % len(URLS)])
                follow = other.responses.create(
                    model=GPT, input="and then", previous_response_id=reply.id
                )
                self.assertEqual(follow.status, "completed")
                self.assertEqual(other.responses.retrieve(reply.id).id, reply.id)
                items = other.responses.input_items.list(reply.id)
                self.assertEqual(
                    [c.text for c in items.data[0].content], ["hello from the responses api"]
                )

    def test_stream_helper(self):
        for url in URLS:
            with self.subTest(node=url):
                client = openai_client(url)
                with client.responses.stream(model=GPT, input="stream these words") as stream:
                    deltas = "".join(
                        e.delta for e in stream if e.type == "response.output_text.delta"
                    )
                    final = stream.get_final_response()
                self.assertIn("stream these words", deltas)
                self.assertEqual(final.output_text, deltas)
                self.assertGreater(final.usage.output_tokens, 0)

    def test_function_call(self):
        for url in URLS:
            with self.subTest(node=url):
                reply = openai_client(url).responses.create(
                    model=GPT, input="Paris", tools=RESPONSES_TOOLS
                )
                calls = [o for o in reply.output if o.type == "function_call"]
                self.assertEqual(len(calls), 1)
                self.assertEqual(calls[0].name, "get_weather")
                self.assertEqual(json.loads(calls[0].arguments), {"city": "Paris"})

    def test_delete(self):
        client = openai_client(URLS[0])
        reply = client.responses.create(model=GPT, input="forget me")
        openai_client(URLS[-1]).responses.delete(reply.id)
        with self.assertRaises(openai.NotFoundError):
            openai_client(URLS[0], retries=0).responses.retrieve(reply.id)


class AzureOpenAIKind(unittest.TestCase):
    """Chat, the Responses API and count_tokens on an `azure_openai` route."""

    def test_chat_create_and_stream(self):
        for url in URLS:
            with self.subTest(node=url):
                client = openai_client(url)
                reply = client.chat.completions.create(
                    model=AZURE, messages=user("hello from azure")
                )
                self.assertIn("hello from azure", reply.choices[0].message.content)
                self.assertGreater(reply.usage.total_tokens, 0)
                stream = client.chat.completions.create(
                    model=AZURE,
                    messages=user("stream from azure"),
                    stream=True,
                    stream_options={"include_usage": True},
                )
                chunks = list(stream)
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                self.assertIn("stream from azure", text)
                self.assertGreater(chunks[-1].usage.total_tokens, 0)

    def test_responses_create_follow_up_and_stream(self):
        for i, url in enumerate(URLS):
            with self.subTest(node=url):
                client = openai_client(url)
                reply = client.responses.create(model=AZURE, input="hello azure responses")
                self.assertEqual(reply.status, "completed")
                self.assertIn("hello azure responses", reply.output_text)
                other = openai_client(URLS[(i + 1) % len(URLS)])
                follow = other.responses.create(
                    model=AZURE, input="and then", previous_response_id=reply.id
                )
                self.assertEqual(follow.status, "completed")
                self.assertEqual(other.responses.retrieve(reply.id).id, reply.id)
                with client.responses.stream(model=AZURE, input="azure stream words") as stream:
                    deltas = "".join(
                        e.delta for e in stream if e.type == "response.output_text.delta"
                    )
                    final = stream.get_final_response()
                self.assertIn("azure stream words", deltas)
                self.assertGreater(final.usage.output_tokens, 0)

    def test_count_tokens_is_estimated(self):
        for url in URLS:
            with self.subTest(node=url):
                raw = anthropic_client(url).messages.with_raw_response.count_tokens(
                    model=AZURE, messages=user("hello there")
                )
                self.assertEqual(raw.headers.get("x-sluice-token-count"), "estimate")
                self.assertGreater(raw.parse().input_tokens, 2)


class NativeKinds(unittest.TestCase):
    """Both SDKs on `gemini`, `vertex` and `bedrock` routes: every request and
    answer translated to and from the provider's own API."""

    ROUTES = (GEMINI, VERTEX, BEDROCK)

    def test_chat_create_stream_and_tools(self):
        for url, route in ((u, r) for u in URLS for r in self.ROUTES):
            with self.subTest(node=url, route=route):
                client = openai_client(url)
                reply = client.chat.completions.create(
                    model=route, messages=user("hello from gemini")
                )
                self.assertIn("hello from gemini", reply.choices[0].message.content)
                self.assertEqual(reply.choices[0].finish_reason, "stop")
                self.assertGreater(reply.usage.completion_tokens, 0)
                stream = client.chat.completions.create(
                    model=route,
                    messages=user("stream from gemini"),
                    stream=True,
                    stream_options={"include_usage": True},
                )
                chunks = list(stream)
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                self.assertIn("stream from gemini", text)
                self.assertEqual(chunks[-1].usage.prompt_tokens, reply.usage.prompt_tokens)
                self.assertGreater(chunks[-1].usage.completion_tokens, 0)
                called = client.chat.completions.create(
                    model=route, messages=user("Paris"), tools=OPENAI_TOOLS
                )
                call = called.choices[0].message.tool_calls[0]
                self.assertEqual(call.function.name, "get_weather")
                self.assertEqual(json.loads(call.function.arguments), {"city": "Paris"})

    def test_anthropic_messages_and_count_tokens(self):
        for url, route in ((u, r) for u in URLS for r in self.ROUTES):
            with self.subTest(node=url, route=route):
                client = anthropic_client(url)
                reply = client.messages.create(
                    model=route, max_tokens=256, messages=user("hello anthropic on gemini")
                )
                self.assertIn("hello anthropic on gemini", reply.content[0].text)
                with client.messages.stream(
                    model=route, max_tokens=256, messages=user("stream on gemini")
                ) as stream:
                    text = "".join(stream.text_stream)
                    final = stream.get_final_message()
                self.assertIn("stream on gemini", text)
                self.assertGreater(final.usage.output_tokens, 0)
                raw = client.messages.with_raw_response.count_tokens(
                    model=route, messages=user("hello there")
                )
                self.assertEqual(raw.headers.get("x-sluice-token-count"), "estimate")
                self.assertGreater(raw.parse().input_tokens, 2)


class TranslatedResponses(unittest.TestCase):
    """The Responses API on Anthropic, Gemini, Vertex and Bedrock routes: translated."""

    ROUTES = (CLAUDE, GEMINI, VERTEX, BEDROCK)

    def test_create_stream_and_function_call(self):
        for url, route in ((u, r) for u in URLS for r in self.ROUTES):
            with self.subTest(node=url, route=route):
                client = openai_client(url)
                reply = client.responses.create(
                    model=route, instructions="be brief", input="hello translated responses"
                )
                self.assertEqual(reply.status, "completed")
                self.assertIn("hello translated responses", reply.output_text)
                self.assertGreater(reply.usage.output_tokens, 0)
                with client.responses.stream(model=route, input="stream translated") as stream:
                    deltas = "".join(
                        e.delta for e in stream if e.type == "response.output_text.delta"
                    )
                    final = stream.get_final_response()
                self.assertIn("stream translated", deltas)
                self.assertEqual(final.output_text, deltas)
                called = client.responses.create(model=route, input="Paris", tools=RESPONSES_TOOLS)
                calls = [o for o in called.output if o.type == "function_call"]
                self.assertEqual([c.name for c in calls], ["get_weather"])
                self.assertEqual(json.loads(calls[0].arguments), {"city": "Paris"})
                # The conversation goes in `input`, the call's output too.
                after = client.responses.create(
                    model=route,
                    input=[
                        {"role": "user", "content": "Paris"},
                        {"type": "function_call", "call_id": calls[0].call_id,
                         "name": "get_weather", "arguments": calls[0].arguments},
                        {"type": "function_call_output", "call_id": calls[0].call_id,
                         "output": "21C"},
                    ],
                    tools=RESPONSES_TOOLS,
                )
                self.assertEqual(after.status, "completed")
                self.assertTrue(after.output_text)


class AnthropicMessages(unittest.TestCase):
    def test_create(self):
        for url in URLS:
            for route in (CLAUDE, GPT):
                with self.subTest(node=url, route=route):
                    reply = anthropic_client(url).messages.create(
                        model=route, max_tokens=256, messages=user("hello from the anthropic sdk")
                    )
                    self.assertEqual(reply.type, "message")
                    self.assertEqual(reply.role, "assistant")
                    self.assertEqual(reply.stop_reason, "end_turn")
                    self.assertIn("hello from the anthropic sdk", reply.content[0].text)
                    self.assertGreater(reply.usage.output_tokens, 0)

    def test_stream_helper(self):
        for url in URLS:
            for route in (CLAUDE, GPT):
                with self.subTest(node=url, route=route):
                    client = anthropic_client(url)
                    with client.messages.stream(
                        model=route, max_tokens=256, messages=user("stream me please")
                    ) as stream:
                        text = "".join(stream.text_stream)
                        final = stream.get_final_message()
                    self.assertIn("stream me please", text)
                    self.assertEqual(final.content[0].text, text)
                    self.assertEqual(final.stop_reason, "end_turn")
                    self.assertGreater(final.usage.output_tokens, 0)

    def test_tool_use(self):
        for url in URLS:
            for route in (CLAUDE, GPT):
                with self.subTest(node=url, route=route):
                    reply = anthropic_client(url).messages.create(
                        model=route, max_tokens=256, messages=user("Paris"), tools=ANTHROPIC_TOOLS
                    )
                    self.assertEqual(reply.stop_reason, "tool_use")
                    uses = [b for b in reply.content if b.type == "tool_use"]
                    self.assertEqual(len(uses), 1)
                    self.assertEqual(uses[0].name, "get_weather")
                    self.assertEqual(uses[0].input, {"city": "Paris"})
                    self.assertTrue(uses[0].id)

    def test_tool_use_streamed(self):
        for url in URLS:
            for route in (CLAUDE, GPT):
                with self.subTest(node=url, route=route):
                    with anthropic_client(url).messages.stream(
                        model=route, max_tokens=256, messages=user("Paris"), tools=ANTHROPIC_TOOLS
                    ) as stream:
                        final = stream.get_final_message()
                    self.assertEqual(final.stop_reason, "tool_use")
                    uses = [b for b in final.content if b.type == "tool_use"]
                    self.assertEqual([u.input for u in uses], [{"city": "Paris"}])

    def test_count_tokens(self):
        for url in URLS:
            for route, counted_by in ((CLAUDE, "upstream"), (GPT, "estimate")):
                with self.subTest(node=url, route=route):
                    raw = anthropic_client(url).messages.with_raw_response.count_tokens(
                        model=route, system="be brief", messages=user("hello there")
                    )
                    self.assertEqual(raw.headers.get("x-sluice-token-count"), counted_by)
                    self.assertGreater(raw.parse().input_tokens, 2)

    def test_models(self):
        for url in URLS:
            with self.subTest(node=url):
                ids = [m.id for m in anthropic_client(url, RESTRICTED_KEY).models.list()]
                self.assertEqual(ids, [GPT])


class OpenAIErrors(unittest.TestCase):
    def call(self, url, key=KEY, model=GPT, **extra):
        client = openai_client(url, key, retries=0)
        return client.chat.completions.create(model=model, messages=user("hi"), **extra)

    def test_each_status_maps_to_its_error_class(self):
        for url in URLS:
            with self.subTest(node=url, error="AuthenticationError"):
                with self.assertRaises(openai.AuthenticationError) as caught:
                    self.call(url, key="sk-not-a-sluice-key")
                self.assertEqual(caught.exception.status_code, 401)
                self.assertEqual(caught.exception.code, "invalid_api_key")
            with self.subTest(node=url, error="NotFoundError"):
                with self.assertRaises(openai.NotFoundError) as caught:
                    self.call(url, model="no-such-route")
                self.assertEqual(caught.exception.code, "model_not_found")
                self.assertEqual(caught.exception.param, "model")
            with self.subTest(node=url, error="BadRequestError"):
                with self.assertRaises(openai.BadRequestError) as caught:
                    self.call(url, extra_body={"messages": "not a list"})
                self.assertEqual(caught.exception.status_code, 400)
            with self.subTest(node=url, error="PermissionDeniedError"):
                with self.assertRaises(openai.PermissionDeniedError) as caught:
                    self.call(url, key=RESTRICTED_KEY, model=CLAUDE)
                self.assertEqual(caught.exception.status_code, 403)
            with self.subTest(node=url, error="RateLimitError"):
                with self.assertRaises(openai.RateLimitError) as caught:
                    self.call(url, model=RATE_LIMITED)
                headers = caught.exception.response.headers
                self.assertIsNotNone(headers.get("retry-after-ms"), dict(headers))
                self.assertIsNotNone(headers.get("retry-after"), dict(headers))
                self.assertIsNotNone(headers.get("x-request-id"), dict(headers))
            with self.subTest(node=url, error="InternalServerError"):
                with self.assertRaises(openai.InternalServerError) as caught:
                    self.call(url, model=BROKEN)
                self.assertGreaterEqual(caught.exception.status_code, 500)
                self.assertIsNotNone(caught.exception.response.headers.get("retry-after-ms"))

    def test_other_endpoints_raise_the_same_classes(self):
        for url in URLS:
            with self.subTest(node=url):
                client = openai_client(url, "sk-not-a-sluice-key", retries=0)
                with self.assertRaises(openai.AuthenticationError):
                    client.embeddings.create(model=EMBED, input="x")
                with self.assertRaises(openai.AuthenticationError):
                    client.models.list()
                client = openai_client(url, retries=0)
                with self.assertRaises(openai.NotFoundError):
                    client.models.retrieve("no-such-route")
                with self.assertRaises(openai.NotFoundError):
                    client.completions.create(model="no-such-route", prompt="x")


class AnthropicErrors(unittest.TestCase):
    def call(self, url, key=KEY, model=CLAUDE, **extra):
        client = anthropic_client(url, key, retries=0)
        return client.messages.create(model=model, max_tokens=64, messages=user("hi"), **extra)

    def assert_error_type(self, exception, kind):
        body = exception.body
        self.assertEqual(body.get("type"), "error", body)
        self.assertEqual(body["error"]["type"], kind, body)

    def test_each_status_maps_to_its_error_class(self):
        for url in URLS:
            with self.subTest(node=url, error="AuthenticationError"):
                with self.assertRaises(anthropic.AuthenticationError) as caught:
                    self.call(url, key="sk-not-a-sluice-key")
                self.assert_error_type(caught.exception, "authentication_error")
            with self.subTest(node=url, error="NotFoundError"):
                with self.assertRaises(anthropic.NotFoundError) as caught:
                    self.call(url, model="no-such-route")
                self.assert_error_type(caught.exception, "not_found_error")
            with self.subTest(node=url, error="BadRequestError"):
                with self.assertRaises(anthropic.BadRequestError) as caught:
                    self.call(url, extra_body={"messages": "not a list"})
                self.assert_error_type(caught.exception, "invalid_request_error")
            with self.subTest(node=url, error="PermissionDeniedError"):
                with self.assertRaises(anthropic.PermissionDeniedError) as caught:
                    self.call(url, key=RESTRICTED_KEY, model=CLAUDE)
                self.assert_error_type(caught.exception, "permission_error")
            with self.subTest(node=url, error="RateLimitError"):
                with self.assertRaises(anthropic.RateLimitError) as caught:
                    self.call(url, model=RATE_LIMITED)
                self.assert_error_type(caught.exception, "rate_limit_error")
                headers = caught.exception.response.headers
                self.assertIsNotNone(headers.get("retry-after-ms"), dict(headers))
                self.assertIsNotNone(headers.get("retry-after"), dict(headers))
            with self.subTest(node=url, error="InternalServerError"):
                with self.assertRaises(anthropic.InternalServerError) as caught:
                    self.call(url, model=BROKEN)
                self.assertGreaterEqual(caught.exception.status_code, 500)
                self.assertIsNotNone(caught.exception.response.headers.get("retry-after-ms"))

    def test_stream_helper_raises_before_the_first_event(self):
        for url in URLS:
            with self.subTest(node=url):
                client = anthropic_client(url, "sk-not-a-sluice-key", retries=0)
                with self.assertRaises(anthropic.AuthenticationError):
                    with client.messages.stream(
                        model=CLAUDE, max_tokens=64, messages=user("hi")
                    ) as stream:
                        stream.get_final_message()


if __name__ == "__main__":
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2)
    result = unittest.main(testRunner=runner, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
