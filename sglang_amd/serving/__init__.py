"""The serving family: what keeps an SGLang server up whatever its requests say."""
