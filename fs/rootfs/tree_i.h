/* The tree's structures, shared by tree.c (building) and tree_api.c. */
#ifndef ECRFS_ROOTFS_TREE_I_H
#define ECRFS_ROOTFS_TREE_I_H

#include "fs/rootfs/rootfs_i.h"

#define TREE_NO_ENT UINT32_MAX /* a directory made for a missing parent */

/* What a node shows; hardlinks share one. */
struct tree_inode {
	enum rootfs_type type;
	unsigned layer; /* real layer number */
	uint32_t ent;	/* entry in that layer's index, or TREE_NO_ENT */
	uint32_t refs;	/* nodes pointing here */
	uint32_t nlink;
	uint64_t ino;
};

struct rootfs_node {
	char *name;
	struct rootfs_node *parent, *hnext;
	struct tree_inode *inode;
	struct rootfs_node **kids; /* sorted by name once the tree is built */
	size_t nkids, capkids, kid_idx;
	uint32_t plen; /* length of the node's path from the root */
};

struct ino_slot {
	uint64_t ino;
	const struct rootfs_node *node;
};

struct rootfs_tree {
	char *ns;
	const struct rootfs_index *const *layers;
	const struct rootfs_index *single; /* layer view: its one index */
	size_t n_layers;
	unsigned layer_base; /* layer number of layers[0] */
	struct rootfs_node *root;
	struct rootfs_node **tab; /* (parent, name) -> node, while building */
	size_t nbuckets, n_nodes;
	struct ino_slot *inos; /* sorted by ino */
	size_t n_inos;
};

static inline const struct rootfs_ent *tree_ent(const struct rootfs_tree *t,
						const struct tree_inode *in)
{
	if (in->ent == TREE_NO_ENT)
		return NULL;
	return &t->layers[in->layer - t->layer_base]->ents[in->ent];
}

/* tree_api.c: sorting, nlink and inode numbers once every layer is in. */
int rootfs_tree_finalize(struct rootfs_tree *t);

#endif
