package convert

import (
	"strconv"
	"strings"
)

const (
	jsonConverter = "org.apache.kafka.connect.json.JsonConverter"
	avroConverter = "io.confluent.connect.avro.AvroConverter"
)

// converters maps key.converter and value.converter: JsonConverter to json.schemas,
// Confluent's AvroConverter to serialization: avro with schema_registry.
func (c *conv) converters() {
	key, keySet := c.take("key.converter")
	value, valueSet := c.take("value.converter")
	if !keySet && !valueSet {
		c.whole(Note, "no key.converter or value.converter: the Connect worker's apply; taken as Kafka's default, JsonConverter with schemas.enable=true (json.schemas: true)")
		key, value = jsonConverter, jsonConverter
	}
	if !keySet {
		key = value
	}
	if !valueSet {
		value = key
	}
	for _, side := range []struct{ prop, class string }{{"key.converter", key}, {"value.converter", value}} {
		if _, set := c.p.Get(side.prop); !set {
			continue // the other side's class, reported there
		}
		switch side.class {
		case jsonConverter, avroConverter:
			to := "json.schemas"
			if side.class == avroConverter {
				to = "serialization"
			}
			c.add(side.prop, Mapped, to, "")
		default:
			c.add(side.prop, Unsupported, "", "%s: procon-cdc writes JsonConverter's and Confluent's AvroConverter's forms", side.class)
		}
	}
	if key != value {
		if (key == jsonConverter || key == avroConverter) && (value == jsonConverter || value == avroConverter) {
			c.whole(Unsupported, "keys as %s and values as %s: procon-cdc serializes a topic's keys and values alike", key, value)
		}
		c.converterOptions("key.converter.", key)
		c.converterOptions("value.converter.", value)
		return
	}
	switch value {
	case jsonConverter:
		k := c.schemasEnable("key.converter.")
		v := c.schemasEnable("value.converter.")
		if k != v {
			c.whole(Unsupported, "key.converter.schemas.enable=%t but value.converter.schemas.enable=%t: procon-cdc's json.schemas covers both", k, v)
		}
		c.jsonSchema = v
		if v {
			j := newMap()
			j.set("schemas", true)
			c.y.set("json", j)
		}
	case avroConverter:
		c.avro = true
		c.y.set("serialization", "avro")
		c.registry()
	}
	c.converterOptions("key.converter.", key)
	c.converterOptions("value.converter.", value)
}

// schemasEnable is JsonConverter's schemas.enable of one side (default true).
func (c *conv) schemasEnable(prefix string) bool {
	v, ok := c.take(prefix + "schemas.enable")
	if !ok {
		return true
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		c.add(prefix+"schemas.enable", Unsupported, "", "%q is not a boolean", v)
		return true
	}
	c.add(prefix+"schemas.enable", Mapped, "json.schemas", "")
	return b
}

// registry maps the AvroConverter's registry settings.
func (c *conv) registry() {
	r := newMap()
	url, ok := c.text("value.converter.schema.registry.url", "PROCON_REGISTRY_URL")
	if !ok {
		url, ok = c.text("key.converter.schema.registry.url", "PROCON_REGISTRY_URL")
	}
	if !ok {
		c.whole(Unsupported, "AvroConverter without schema.registry.url")
		return
	}
	if k, ok := c.p.Get("key.converter.schema.registry.url"); ok && literal(k) != url && !isProviderRef(k) {
		c.add("key.converter.schema.registry.url", Unsupported, "", "differs from value.converter.schema.registry.url: procon-cdc uses one registry")
	}
	if first, rest, several := strings.Cut(url, ","); several {
		c.whole(Note, "several registry URLs (%s); procon-cdc takes the first, %s", rest, first)
		url = first
	}
	r.set("url", url)
	for _, side := range []string{"key.converter.", "value.converter."} {
		if _, ok := c.p.Get(side + "schema.registry.url"); ok && !c.noted(side+"schema.registry.url") {
			c.add(side+"schema.registry.url", Mapped, "schema_registry.url", "")
		}
	}
	// basic.auth.user.info is user:password (with basic.auth.credentials.source=USER_INFO).
	for _, side := range []string{"value.converter.", "key.converter."} {
		info, ok := c.p.Get(side + "basic.auth.user.info")
		if !ok {
			continue
		}
		c.done[side+"basic.auth.user.info"] = true
		if _, set := r.get("username"); set {
			c.add(side+"basic.auth.user.info", Ignored, "", "the other converter's credentials are used")
			continue
		}
		user, _, _ := strings.Cut(info, ":")
		if isProviderRef(info) {
			c.env["PROCON_REGISTRY_USER"] = "the user in " + side + "basic.auth.user.info (" + info + ")"
			user = "${PROCON_REGISTRY_USER}"
		} else {
			user = literal(user)
		}
		r.set("username", user)
		if c.opts.InlineSecrets && !isProviderRef(info) {
			_, pw, _ := strings.Cut(info, ":")
			r.set("password", literal(pw))
			c.add(side+"basic.auth.user.info", Mapped, "schema_registry.username, .password", "")
		} else {
			c.env["PROCON_REGISTRY_PASSWORD"] = "the password in " + side + "basic.auth.user.info"
			r.set("password", "${PROCON_REGISTRY_PASSWORD}")
			c.add(side+"basic.auth.user.info", Note, "schema_registry.username, .password", "a password: set PROCON_REGISTRY_PASSWORD to it in procon-cdc's environment")
		}
	}
	c.y.set("schema_registry", r)
}

// converterOptions accounts for the remaining <side>.converter.* properties.
func (c *conv) converterOptions(prefix, class string) {
	for _, k := range c.p.Keys {
		if !strings.HasPrefix(k, prefix) || c.done[k] {
			continue
		}
		opt := strings.TrimPrefix(k, prefix)
		v := c.p.Values[k]
		switch {
		case opt == "schemas.cache.size" || opt == "max.schemas.per.subject" || opt == "latest.cache.size" || opt == "latest.cache.ttl.sec" ||
			opt == "basic.auth.credentials.source" || opt == "schemas.enable":
			c.add(k, Ignored, "", "does not change the records")
		case class == jsonConverter && opt == "decimal.format":
			if strings.EqualFold(v, "BASE64") {
				c.add(k, Ignored, "", "BASE64 is the default")
			} else {
				c.add(k, Unsupported, "", "%s: procon-cdc writes decimals as Connect's default, base64 bytes", v)
			}
		case class == jsonConverter && opt == "replace.null.with.default":
			if strings.EqualFold(v, "true") {
				c.add(k, Ignored, "", "true is the default")
			} else {
				c.add(k, Unsupported, "", "procon-cdc writes a column's default in place of a null, as the converter does by default")
			}
		case class == avroConverter && opt == "auto.register.schemas" && strings.EqualFold(v, "true"),
			class == avroConverter && opt == "connect.meta.data" && strings.EqualFold(v, "true"),
			class == avroConverter && opt == "scrub.invalid.names" && strings.EqualFold(v, "false"),
			class == avroConverter && opt == "enhanced.avro.schema.support" && strings.EqualFold(v, "false"),
			class == avroConverter && strings.HasSuffix(opt, "subject.name.strategy") && strings.HasSuffix(v, ".TopicNameStrategy"):
			c.add(k, Ignored, "", "the default")
		case class == avroConverter && strings.HasPrefix(opt, "schema.registry.ssl."):
			c.add(k, Note, "", "a Java keystore setting: give schema_registry.tls PEM files (ca_file, cert_file, key_file) instead")
		default:
			c.add(k, Unsupported, "", "a converter option procon-cdc does not have")
		}
	}
}
