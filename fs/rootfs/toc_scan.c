/* Walking the "entries" array of a TOC's JSON one entry at a time: a TOC
 * of 100,000 files is tens of MiB of text, and jansson's tree of all of it
 * would be ten times that; here only one entry is a jansson object at a
 * time. A small scanner finds where each value ends (strings with escapes,
 * brackets by depth); jansson parses and checks each entry. */
#include <errno.h>
#include <string.h>

#include "fs/rootfs/rootfs_i.h"

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at a '"': just past the closing one, or NULL. */
static const char *string_end(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\' && ++p >= end)
			return NULL;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* Where the value at p ends: past its closing bracket or quote, or at the
 * character ending a scalar. NULL when it does not end or is empty. */
static const char *value_end(const char *p, const char *end)
{
	const char *start = p;
	size_t depth = 0;
	while (p < end) {
		char c = *p;
		if (c == '"') {
			if (!(p = string_end(p, end)))
				return NULL;
			if (depth == 0)
				return p;
			continue;
		}
		if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				break;
			if (--depth == 0)
				return p + 1;
		} else if (depth == 0 &&
			   (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
			break;
		}
		p++;
	}
	return depth == 0 && p > start ? p : NULL;
}

/* Another member's value ("version", "tarSplitDigest"): small, checked by
 * jansson too, then skipped. */
static int other_value(const char **pp, const char *end)
{
	const char *e = value_end(*pp, end);
	json_t *v = e ? json_loadb(*pp, (size_t)(e - *pp), JSON_DECODE_ANY, NULL) : NULL;
	if (!v)
		return -EBADMSG;
	json_decref(v);
	*pp = e;
	return 0;
}

/* The array at *pp: cb for each element parsed alone. */
static int each_element(const char **pp, const char *end, rootfs_toc_entry_cb cb, void *arg)
{
	const char *p = *pp;
	if (p >= end || *p++ != '[')
		return -EBADMSG;
	p = skip_ws(p, end);
	if (p < end && *p == ']') {
		*pp = p + 1;
		return 0;
	}
	for (;;) {
		const char *e = value_end(p, end);
		json_t *v = e ? json_loadb(p, (size_t)(e - p), JSON_REJECT_DUPLICATES, NULL) : NULL;
		int rc = v ? cb(arg, v) : -EBADMSG;
		json_decref(v);
		if (rc)
			return rc;
		p = skip_ws(e, end);
		if (p < end && *p == ']') {
			*pp = p + 1;
			return 0;
		}
		if (p >= end || *p != ',')
			return -EBADMSG;
		p = skip_ws(p + 1, end);
	}
}

int rootfs_toc_each_entry(const char *json, size_t len, rootfs_toc_entry_cb cb, void *arg)
{
	const char *end = json + len, *p = skip_ws(json, end);
	int seen = 0, rc;
	if (p >= end || *p++ != '{')
		return -EBADMSG;
	for (p = skip_ws(p, end); p < end && *p != '}';) {
		const char *k = p, *ke = *p == '"' ? string_end(p, end) : NULL;
		if (!ke)
			return -EBADMSG;
		int entries = ke - k == 9 && memcmp(k, "\"entries\"", 9) == 0;
		p = skip_ws(ke, end);
		if (p >= end || *p++ != ':')
			return -EBADMSG;
		p = skip_ws(p, end);
		if (entries && seen++)
			return -EBADMSG; /* a duplicate key */
		if (entries && (rc = each_element(&p, end, cb, arg)) != 0)
			return rc;
		if (!entries && (rc = other_value(&p, end)) != 0)
			return rc;
		p = skip_ws(p, end);
		if (p < end && *p == ',')
			p = skip_ws(p + 1, end);
		else if (p >= end || *p != '}')
			return -EBADMSG;
	}
	if (p >= end || skip_ws(p + 1, end) != end || !seen)
		return -EBADMSG;
	return 0;
}
