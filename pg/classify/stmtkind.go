package classify

import pg "github.com/pganalyze/pg_query_go/v6"

// stmtKind returns the Kind of a statement message, and false for a message
// that is not a statement (an expression, a clause, a name).
func stmtKind(m any) (Kind, bool) {
	switch n := m.(type) {
	case *pg.SelectStmt:
		return KindSelect, true
	case *pg.InsertStmt:
		return KindInsert, true
	case *pg.UpdateStmt:
		return KindUpdate, true
	case *pg.DeleteStmt:
		return KindDelete, true
	case *pg.MergeStmt:
		return KindMerge, true
	case *pg.CopyStmt:
		if n.IsFrom {
			return KindCopyFrom, true
		}
		return KindCopyTo, true
	case *pg.TruncateStmt:
		return KindTruncate, true
	case *pg.CallStmt:
		return KindCall, true
	case *pg.DoStmt:
		return KindDo, true
	case *pg.VariableSetStmt, *pg.ConstraintsSetStmt:
		return KindSet, true
	case *pg.VariableShowStmt:
		return KindShow, true
	case *pg.TransactionStmt:
		return KindTransaction, true
	case *pg.ExplainStmt:
		return KindExplain, true
	case *pg.PrepareStmt:
		return KindPrepare, true
	case *pg.ExecuteStmt:
		return KindExecute, true
	case *pg.DeallocateStmt:
		return KindDeallocate, true
	case *pg.ListenStmt:
		return KindListen, true
	case *pg.UnlistenStmt:
		return KindUnlisten, true
	case *pg.NotifyStmt:
		return KindNotify, true
	case *pg.DiscardStmt:
		return KindDiscard, true
	case *pg.LockStmt:
		return KindLock, true
	case *pg.VacuumStmt, *pg.ClusterStmt, *pg.ReindexStmt, *pg.CheckPointStmt, *pg.RefreshMatViewStmt:
		return KindMaintenance, true
	case *pg.GrantStmt, *pg.GrantRoleStmt, *pg.AlterDefaultPrivilegesStmt, *pg.CreateRoleStmt,
		*pg.AlterRoleStmt, *pg.AlterRoleSetStmt, *pg.DropRoleStmt, *pg.ReassignOwnedStmt:
		return KindDCL, true
	case *pg.DeclareCursorStmt, *pg.ClosePortalStmt, *pg.FetchStmt:
		return KindCursor, true
	case *pg.LoadStmt:
		return KindOther, true
	case *pg.CreateSchemaStmt, *pg.AlterTableStmt, *pg.AlterCollationStmt, *pg.AlterDomainStmt,
		*pg.CreateStmt, *pg.CreateTableSpaceStmt, *pg.DropTableSpaceStmt, *pg.AlterTableSpaceOptionsStmt,
		*pg.AlterTableMoveAllStmt, *pg.CreateExtensionStmt, *pg.AlterExtensionStmt, *pg.AlterExtensionContentsStmt,
		*pg.CreateFdwStmt, *pg.AlterFdwStmt, *pg.CreateForeignServerStmt, *pg.AlterForeignServerStmt,
		*pg.CreateForeignTableStmt, *pg.CreateUserMappingStmt, *pg.AlterUserMappingStmt, *pg.DropUserMappingStmt,
		*pg.ImportForeignSchemaStmt, *pg.CreatePolicyStmt, *pg.AlterPolicyStmt, *pg.CreateAmStmt,
		*pg.CreateTrigStmt, *pg.CreateEventTrigStmt, *pg.AlterEventTrigStmt, *pg.CreatePLangStmt,
		*pg.CreateSeqStmt, *pg.AlterSeqStmt, *pg.DefineStmt, *pg.CreateDomainStmt, *pg.CreateOpClassStmt,
		*pg.CreateOpFamilyStmt, *pg.AlterOpFamilyStmt, *pg.DropStmt, *pg.CommentStmt, *pg.SecLabelStmt,
		*pg.IndexStmt, *pg.CreateStatsStmt, *pg.AlterStatsStmt, *pg.CreateFunctionStmt, *pg.AlterFunctionStmt,
		*pg.RenameStmt, *pg.AlterObjectDependsStmt, *pg.AlterObjectSchemaStmt, *pg.AlterOwnerStmt,
		*pg.AlterOperatorStmt, *pg.AlterTypeStmt, *pg.RuleStmt, *pg.CompositeTypeStmt, *pg.CreateEnumStmt,
		*pg.CreateRangeStmt, *pg.AlterEnumStmt, *pg.ViewStmt, *pg.CreatedbStmt, *pg.AlterDatabaseStmt,
		*pg.AlterDatabaseRefreshCollStmt, *pg.AlterDatabaseSetStmt, *pg.DropdbStmt, *pg.AlterSystemStmt,
		*pg.CreateTableAsStmt, *pg.CreateConversionStmt, *pg.CreateCastStmt, *pg.CreateTransformStmt,
		*pg.DropOwnedStmt, *pg.AlterTSDictionaryStmt, *pg.AlterTSConfigurationStmt, *pg.CreatePublicationStmt,
		*pg.AlterPublicationStmt, *pg.CreateSubscriptionStmt, *pg.AlterSubscriptionStmt, *pg.DropSubscriptionStmt:
		return KindDDL, true
	}
	return "", false
}
